"""Shared conversion of Cast and CastLike: the ONNX target type (via dist_rt.dtypes) and the
float8 saturation rules."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from dist_rt import dtypes
from dist_rt.errors import ModelError, ShapeError


def target_dtype(layer: Any, code: Any) -> np.dtype:
    """The NumPy dtype of Cast's ``to`` attribute.

    Raises:
        ShapeError: ``to`` is missing or names a type without a NumPy equivalent here.
    """
    if code is None:
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): attribute 'to' is missing")
    try:
        return dtypes.from_onnx(int(code))
    except ModelError as exc:
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): cannot cast to ONNX type "
                         f"{code}: {exc}") from exc


def is_float8(dtype: np.dtype) -> bool:
    """True for the 8-bit (and 4-bit) float types, whose overflow ``saturate`` controls."""
    return np.dtype(dtype).itemsize == 1 and "float" in np.dtype(dtype).name


def convert(xp: Any, x: Any, dtype: np.dtype, saturate: bool) -> Any:
    """Cast ``x`` to ``dtype`` with ONNX's rules.

    float -> int truncates toward zero; to float8 with ``saturate`` out-of-range values
    (+-inf included) become +-max, otherwise they become inf/NaN.
    """
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x.copy()
    if x.dtype.kind == "O" or dtype.kind == "O":
        return _convert_strings(x, dtype)
    if is_float8(dtype):
        wide = x.astype(np.float32)
        if saturate:
            big = float(ml_dtypes.finfo(dtype).max)
            wide = xp.clip(wide, -big, big)  # NaN stays NaN
        return wide.astype(dtype)
    if x.dtype in (np.dtype(np.float16), dtypes.bfloat16) or is_float8(x.dtype):
        # Go through float32 so ml_dtypes types convert to every target.
        x = x.astype(np.float32)
    return x.astype(dtype)


def _convert_strings(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # Strings live on the host only (NumPy object arrays); ONNX parses/prints them like C.
    if dtype.kind == "O":
        return np.vectorize(_to_text, otypes=[object])(x)
    flat = [str(v.decode() if isinstance(v, bytes) else v) for v in x.ravel()]
    return np.array([float(v) if dtype.kind == "f" else int(v) for v in flat]
                    ).astype(dtype).reshape(x.shape)


def _to_text(v: object) -> str:
    if isinstance(v, float | np.floating):
        if np.isnan(v):
            return "NaN"
        if np.isinf(v):
            return "INF" if v > 0 else "-INF"
        return repr(float(v))
    return str(v)

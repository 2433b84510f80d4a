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


def convert(xp: Any, x: Any, dtype: np.dtype, saturate: bool, round_mode: str = "up") -> Any:
    """Cast ``x`` to ``dtype`` with ONNX's rules.

    float -> int truncates toward zero; to float8 with ``saturate`` out-of-range values
    (+-inf included) become +-max, otherwise they become inf/NaN. To float8_e8m0fnu (a bare
    exponent) ``round_mode`` (``up``, ``down``, ``nearest``) rounds the mantissa away.
    """
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x.copy()
    if x.dtype.kind == "O" or dtype.kind == "O":
        return _convert_strings(x, dtype)
    if dtype == np.dtype(ml_dtypes.float8_e8m0fnu):
        return _to_e8m0(xp, x, saturate, round_mode)
    if is_float8(dtype):
        wide = x.astype(np.float32)
        if saturate:
            big = float(ml_dtypes.finfo(dtype).max)
            wide = xp.clip(wide, -big, big)  # NaN stays NaN
        return wide.astype(dtype)
    if x.dtype in (np.dtype(np.float16), dtypes.bfloat16) or is_float8(x.dtype):
        # Go through float32 so ml_dtypes types convert to every target.
        x = x.astype(np.float32)
    return x.astype(dtype, copy=False)  # 16-bit -> float32: the line above made the copy


def _to_e8m0(xp: Any, x: Any, saturate: bool, round_mode: str) -> Any:
    # The float32 exponent field is the e8m0 code; round on the mantissa bits (as onnx does).
    x = x.astype(np.float32)
    bits = x.view(np.uint32)  # astype made a contiguous copy
    exponent = ((bits >> 23) & 0xFF).astype(np.uint16)
    special = exponent == 0xFF
    if round_mode == "up":
        up = ((bits & 0x7FFFFF) > 0) & ~special
    elif round_mode == "nearest":
        guard = (bits & 0x400000) > 0
        up = guard & (((bits & 0x3FFFFF) > 0) | (exponent > 0)) & ~special
    elif round_mode == "down":
        up = xp.zeros(exponent.shape, dtype=bool)
    else:
        raise ShapeError(f"round_mode {round_mode!r} is not one of up, down, nearest")
    if saturate:
        up &= exponent != 0xFE
    exponent = (exponent + up.astype(np.uint16)).astype(np.uint8)
    exponent = xp.where(special, np.uint8(0xFF), exponent)
    return exponent.view(ml_dtypes.float8_e8m0fnu)


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

"""Helpers shared by the normalization ops: compute dtype and reduced statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from dist_rt.errors import ShapeError


def compute_dtype(dtype: Any) -> np.dtype:
    """Statistics run in float32 for 16-bit floats (ONNX ``stash_type=1``), else as given."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def moments(xp: Any, x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
    """Mean and population variance over ``axes`` (kept as size-1 dims)."""
    mean = x.mean(axis=axes, keepdims=True)
    diff = x - mean
    return mean, (diff * diff).mean(axis=axes, keepdims=True)


def check_param(layer: Any, index: int, got: Any, expected: tuple, what: str) -> None:
    """Raise ShapeError when a per-channel parameter does not have ``expected`` elements."""
    if got is None:
        return
    size = int(np.prod(got.shape)) if hasattr(got, "shape") else None
    want = int(np.prod(expected))
    if size != want:
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): {what} (input {index}) has "
                         f"shape {tuple(got.shape)}, expected {want} elements {expected}")

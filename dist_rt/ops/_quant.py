"""Shared parameter handling of QuantizeLinear and DequantizeLinear.

A scale / zero point is per-tensor (a scalar or one element), per-axis (1-D, one value per
index of ``axis``) or blocked (same rank as X; along ``axis`` each value covers
``block_size`` consecutive elements, opset 21).
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from dist_rt.errors import ShapeError


def expand(layer: Any, xp: Any, param: Any, x_shape: tuple[int, ...], what: str) -> Any:
    """Reshape/repeat ``param`` so it broadcasts against X.

    Raises:
        ShapeError: ``param``'s shape fits none of the three layouts.
    """
    rank = len(x_shape)
    axis = int(layer.attr("axis", 1))
    block = int(layer.attr("block_size", 0) or 0)
    if param.ndim == 0 or (param.ndim == 1 and param.size == 1 and not block):
        return param.reshape(())
    if not -rank <= axis < rank:
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): axis {axis} is out of "
                         f"range for input rank {rank}")
    axis %= rank
    if block:
        want = -(-x_shape[axis] // block)
        if param.ndim != rank or param.shape[axis] != want:
            raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): {what} has shape "
                             f"{tuple(param.shape)}, expected rank {rank} with {want} blocks "
                             f"along axis {axis} (block_size {block})")
        index = [slice(None)] * rank
        index[axis] = slice(0, x_shape[axis])
        return xp.repeat(param, block, axis=axis)[tuple(index)]
    if param.ndim != 1 or param.shape[0] != x_shape[axis]:
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): {what} has shape "
                         f"{tuple(param.shape)}, expected a scalar or ({x_shape[axis]},) for "
                         f"axis {axis} of input shape {tuple(x_shape)}")
    return param.reshape([-1 if i == axis else 1 for i in range(rank)])


def int_range(dtype: np.dtype) -> tuple[int, int] | None:
    """(lowest, highest) of an integer dtype (ml_dtypes int4/uint4 included), else None."""
    try:
        info = ml_dtypes.iinfo(dtype)
    except (TypeError, ValueError):
        return None
    return int(info.min), int(info.max)

"""OneHot: ``out[..., j, ...] = on if j == indices[...] else off`` along a new ``axis``."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op
from dist_rt.ops._tensor_util import here, to_numpy


def _depth(layer, depth) -> int:
    n = int(to_numpy(depth).reshape(-1)[0])
    if n < 1:
        raise ShapeError(f"{here(layer)}depth must be positive, got {n}")
    return n


@register_op("OneHot", since_opset=9)
class OneHot(Op):
    """Inputs ``indices, depth, values=[off, on]``; indices in ``[-depth, depth)`` (negative
    counts from the end), others give an all-``off`` row."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        idx, depth, values = inputs
        if idx.shape is None:
            return [TensorDesc(values.dtype, None)]
        rank = len(idx.shape) + 1
        axis = normalize_axis(layer, int(layer.attr("axis", -1)), rank)
        n = None if depth.value is None else _depth(layer, depth.value)
        shape = idx.shape[:axis] + (n,) + idx.shape[axis:]
        return [TensorDesc(values.dtype, tuple(shape))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        idx, depth, values = inputs
        n = _depth(layer, depth)
        axis = normalize_axis(layer, int(layer.attr("axis", -1)), idx.ndim + 1)
        idx = xp.asarray(idx).astype(np.int64)
        idx = xp.where(idx < 0, idx + n, idx)
        classes = xp.arange(n).reshape((n,) + (1,) * (idx.ndim - axis))
        hot = xp.expand_dims(idx, axis) == classes
        off, on = values.reshape(-1)[0], values.reshape(-1)[1]
        return [xp.where(hot, on, off).astype(values.dtype)]

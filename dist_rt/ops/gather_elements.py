"""GatherElements: ``out[i][j][k] = data[i][index[i][j][k]][k]`` for axis 1 (any axis)."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op
from dist_rt.ops._tensor_util import fmt, here
from dist_rt.ops.gather import normalize_indices


@register_op("GatherElements", since_opset=11)
class GatherElements(Op):
    """Output has the shape of ``indices``; ranks of data and indices must match."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        data, idx = inputs
        if data.shape is not None and idx.shape is not None:
            if len(data.shape) != len(idx.shape):
                raise ShapeError(f"{here(layer)}data {fmt(data.shape)} and indices "
                                 f"{fmt(idx.shape)} must have the same rank")
            normalize_axis(layer, int(layer.attr("axis", 0)), len(data.shape))
        return [TensorDesc(data.dtype, idx.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        data, idx = inputs
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), data.ndim)
        if data.ndim != idx.ndim:
            raise ShapeError(f"{here(layer)}data {fmt(data.shape)} and indices "
                             f"{fmt(idx.shape)} must have the same rank")
        idx = normalize_indices(layer, rt.xp, rt.xp.asarray(idx), data.shape[axis])
        return [rt.xp.take_along_axis(data, idx, axis=axis)]

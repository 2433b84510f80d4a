"""Compress: keep the slices along ``axis`` (or of the flattened input) where ``condition``."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op
from dist_rt.ops._tensor_util import fmt, here


@register_op("Compress", since_opset=9)
class Compress(Op):
    """Inputs ``input, condition`` (1-D bool, may be shorter than the axis)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        x = inputs[0]
        axis = layer.attr("axis")
        if axis is None:
            return [TensorDesc(x.dtype, (None,))]
        if x.shape is None:
            return [TensorDesc(x.dtype, None)]
        axis = normalize_axis(layer, int(axis), len(x.shape))
        return [TensorDesc(x.dtype, x.shape[:axis] + (None,) + x.shape[axis + 1:])]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, cond = inputs
        axis = layer.attr("axis")
        if axis is None:
            x, axis = x.reshape(-1), 0
        axis = normalize_axis(layer, int(axis), x.ndim)
        if cond.ndim != 1 or cond.shape[0] > x.shape[axis]:
            raise ShapeError(f"{here(layer)}condition {fmt(cond.shape)} must be 1-D and no "
                             f"longer than axis {axis} of input {fmt(x.shape)}")
        keep = xp.nonzero(xp.asarray(cond).astype(bool))[0]
        return [xp.take(x, keep, axis=axis)]

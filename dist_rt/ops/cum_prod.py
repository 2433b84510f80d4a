"""CumProd: cumulative product along the axis given as input 1 (``exclusive``, ``reverse``)."""

from __future__ import annotations

from dist_rt.ops._elementwise import widen
from dist_rt.ops._extra_util import scalar
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op


@register_op("CumProd", since_opset=26)
class CumProd(Op):
    """``Y[i] = prod(X[j] for j <= i)`` along ``axis``; ``exclusive`` starts from 1,
    ``reverse`` multiplies from the end."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        return [TensorDesc(inputs[0].dtype, inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        axis = normalize_axis(layer, int(scalar(inputs[1])), x.ndim)
        y = widen(x)
        reverse = bool(layer.attr("reverse", 0))
        if reverse:
            y = xp.flip(y, axis)
        if layer.attr("exclusive", 0) and y.shape[axis]:
            head = [slice(None)] * y.ndim
            head[axis] = slice(0, y.shape[axis] - 1)
            one_shape = tuple(1 if i == axis else d for i, d in enumerate(y.shape))
            y = xp.concatenate([xp.ones(one_shape, dtype=y.dtype), y[tuple(head)]], axis=axis)
        total = xp.cumprod(y, axis=axis, dtype=y.dtype)
        if reverse:
            total = xp.flip(total, axis)
        return [xp.ascontiguousarray(total).astype(x.dtype, copy=False)]

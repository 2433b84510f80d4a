"""CumProd: cumulative product along the axis given as input 1 (``exclusive``, ``reverse``)."""

from __future__ import annotations

from dist_rt.ops._extra_util import scalar
from dist_rt.ops._op import SameShapeOp, normalize_axis, register_op
from dist_rt.ops.cum_sum import cumulate


@register_op("CumProd", since_opset=26)
class CumProd(SameShapeOp):
    """``Y[i] = prod(X[j] for j <= i)`` along ``axis``; ``exclusive`` starts from 1,
    ``reverse`` multiplies from the end."""

    arity = (2, 2)

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        axis = normalize_axis(layer, int(scalar(inputs[1])), x.ndim)
        return [cumulate(layer, x, axis, xp, xp.cumprod, 1)]

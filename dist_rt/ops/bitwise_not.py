"""BitwiseNot: ``Y = ~X`` on integers."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("BitwiseNot", since_opset=18)
class BitwiseNot(Unary):
    """``Y = ~X`` on integers."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.invert(x)

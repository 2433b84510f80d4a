"""Round: round half to even, elementwise."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Round", since_opset=11)
class Round(Unary):
    """Round half to even, elementwise."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.rint(x)

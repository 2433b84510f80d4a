"""Not: ``Y = not X`` (bool)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Not", since_opset=1)
class Not(Unary):
    """``Y = not X`` (bool)."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.logical_not(x)

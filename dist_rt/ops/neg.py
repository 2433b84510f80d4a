"""Neg: ``Y = -X`` (integers wrap like C)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Neg", since_opset=6)
class Neg(Unary):
    """``Y = -X`` (integers wrap like C)."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.negative(x)

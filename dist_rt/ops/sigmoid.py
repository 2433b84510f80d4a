"""Sigmoid: ``Y = 1 / (1 + exp(-X))``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Sigmoid", since_opset=6)
class Sigmoid(Unary):
    """``Y = 1 / (1 + exp(-X))``."""

    @staticmethod
    def fn(xp, x, layer):
        # exp(-|x|) never overflows; the two branches are the same function.
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

"""Elu: ``Y = X`` for X >= 0, ``alpha * (exp(X) - 1)`` below (alpha 1)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Elu", since_opset=6)
class Elu(Unary):
    """``Y = X`` for X >= 0, ``alpha * (exp(X) - 1)`` below (alpha 1)."""

    @staticmethod
    def fn(xp, x, layer):
        alpha = layer.attr("alpha", 1.0)
        return xp.where(x >= 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

"""Celu: ``Y = max(0, X) + min(0, alpha * (exp(X / alpha) - 1))``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Celu", since_opset=12)
class Celu(Unary):
    """``Y = max(0, X) + min(0, alpha * (exp(X / alpha) - 1))``."""

    @staticmethod
    def fn(xp, x, layer):
        alpha = layer.attr("alpha", 1.0)
        return xp.maximum(x, 0) + xp.minimum(0, alpha * xp.expm1(xp.minimum(x, 0) / alpha))

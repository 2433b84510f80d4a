"""LeakyRelu: ``Y = X`` for X >= 0, ``alpha * X`` below (alpha 0.01)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("LeakyRelu", since_opset=6)
class LeakyRelu(Unary):
    """``Y = X`` for X >= 0, ``alpha * X`` below (alpha 0.01)."""

    @staticmethod
    def fn(xp, x, layer):
        alpha = layer.attr("alpha", 0.01)
        return xp.where(x >= 0, x, alpha * x)

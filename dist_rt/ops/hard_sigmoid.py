"""HardSigmoid: ``Y = max(0, min(1, alpha * X + beta))`` (alpha 0.2, beta 0.5)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("HardSigmoid", since_opset=6)
class HardSigmoid(Unary):
    """``Y = max(0, min(1, alpha * X + beta))`` (alpha 0.2, beta 0.5)."""

    @staticmethod
    def fn(xp, x, layer):
        alpha = layer.attr("alpha", 0.2)
        beta = layer.attr("beta", 0.5)
        return xp.clip(alpha * x + beta, 0.0, 1.0)

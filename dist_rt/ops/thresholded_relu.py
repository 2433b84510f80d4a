"""ThresholdedRelu: ``Y = X`` where X > alpha, else 0 (alpha 1)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("ThresholdedRelu", since_opset=10)
class ThresholdedRelu(Unary):
    """``Y = X`` where X > alpha, else 0 (alpha 1)."""

    @staticmethod
    def fn(xp, x, layer):
        alpha = layer.attr("alpha", 1.0)
        return xp.where(x > alpha, x, 0)

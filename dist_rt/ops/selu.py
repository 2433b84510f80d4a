"""Selu: ``Y = gamma * X`` for X > 0, ``gamma * alpha * (exp(X) - 1)`` otherwise."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Selu", since_opset=6)
class Selu(Unary):
    """``Y = gamma * X`` for X > 0, ``gamma * alpha * (exp(X) - 1)`` otherwise."""

    @staticmethod
    def fn(xp, x, layer):
        # Defaults are the float32 values of the SELU paper's constants, as ONNX gives them.
        alpha = layer.attr("alpha", 1.67326319217681884765625)
        gamma = layer.attr("gamma", 1.05070102214813232421875)
        return gamma * xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

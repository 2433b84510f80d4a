"""Tanh: ``Y = tanh(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Tanh", since_opset=6)
class Tanh(Unary):
    """``Y = tanh(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.tanh(x)

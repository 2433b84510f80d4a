"""Cos: ``Y = cos(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Cos", since_opset=7)
class Cos(Unary):
    """``Y = cos(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.cos(x)

"""Tan: ``Y = tan(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Tan", since_opset=7)
class Tan(Unary):
    """``Y = tan(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.tan(x)

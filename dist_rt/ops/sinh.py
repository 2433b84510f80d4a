"""Sinh: ``Y = sinh(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Sinh", since_opset=9)
class Sinh(Unary):
    """``Y = sinh(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.sinh(x)

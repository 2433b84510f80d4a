"""Acosh: ``Y = arccosh(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Acosh", since_opset=9)
class Acosh(Unary):
    """``Y = arccosh(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.arccosh(x)

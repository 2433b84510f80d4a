"""Cosh: ``Y = cosh(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Cosh", since_opset=9)
class Cosh(Unary):
    """``Y = cosh(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.cosh(x)

"""Exp: ``Y = exp(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Exp", since_opset=6)
class Exp(Unary):
    """``Y = exp(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.exp(x)

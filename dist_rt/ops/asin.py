"""Asin: ``Y = arcsin(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Asin", since_opset=7)
class Asin(Unary):
    """``Y = arcsin(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.arcsin(x)

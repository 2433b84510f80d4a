"""Atan: ``Y = arctan(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Atan", since_opset=7)
class Atan(Unary):
    """``Y = arctan(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.arctan(x)

"""Sqrt: ``Y = sqrt(X)`` (NaN below 0)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Sqrt", since_opset=6)
class Sqrt(Unary):
    """``Y = sqrt(X)`` (NaN below 0)."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.sqrt(x)

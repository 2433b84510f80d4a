"""Acos: ``Y = arccos(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Acos", since_opset=7)
class Acos(Unary):
    """``Y = arccos(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.arccos(x)

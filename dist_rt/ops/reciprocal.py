"""Reciprocal: ``Y = 1 / X``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Reciprocal", since_opset=6)
class Reciprocal(Unary):
    """``Y = 1 / X``."""

    @staticmethod
    def fn(xp, x, layer):
        return 1.0 / x

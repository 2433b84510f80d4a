"""Ceil: ``Y = ceil(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Ceil", since_opset=6)
class Ceil(Unary):
    """``Y = ceil(X)``."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.ceil(x)

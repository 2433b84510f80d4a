"""Abs: ``Y = |X|``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Abs", since_opset=6)
class Abs(Unary):
    """``Y = |X|``."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.abs(x)

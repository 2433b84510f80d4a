"""Atanh: ``Y = arctanh(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Atanh", since_opset=9)
class Atanh(Unary):
    """``Y = arctanh(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.arctanh(x)

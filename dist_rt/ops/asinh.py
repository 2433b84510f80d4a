"""Asinh: ``Y = arcsinh(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Asinh", since_opset=9)
class Asinh(Unary):
    """``Y = arcsinh(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.arcsinh(x)

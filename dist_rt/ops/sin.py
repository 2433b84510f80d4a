"""Sin: ``Y = sin(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Sin", since_opset=7)
class Sin(Unary):
    """``Y = sin(X)``."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.sin(x)

"""Max: elementwise max of 1..N inputs with broadcasting."""

from __future__ import annotations

from dist_rt.ops._elementwise import Variadic
from dist_rt.ops._op import register_op


@register_op("Max", since_opset=1)
class Max(Variadic):
    """``Y = maximum(X0, X1, ...)`` elementwise, broadcasting every input."""

    @staticmethod
    def pair(xp, a, b):
        return xp.maximum(a, b)

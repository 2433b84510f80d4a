"""Sum: elementwise sum of 1..N inputs with broadcasting."""

from __future__ import annotations

from dist_rt.ops._elementwise import Variadic
from dist_rt.ops._op import register_op


@register_op("Sum", since_opset=1)
class Sum(Variadic):
    """``Y = add(X0, X1, ...)`` elementwise, broadcasting every input."""

    @staticmethod
    def pair(xp, a, b):
        return xp.add(a, b)

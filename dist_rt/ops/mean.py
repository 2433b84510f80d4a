"""Mean: elementwise mean of 1..N inputs with broadcasting."""

from __future__ import annotations

from dist_rt.ops._elementwise import Variadic
from dist_rt.ops._op import register_op


@register_op("Mean", since_opset=1)
class Mean(Variadic):
    """``Y = (X0 + X1 + ... + Xn-1) / n`` elementwise, broadcasting every input."""

    @staticmethod
    def pair(xp, a, b):
        return xp.add(a, b)

    @staticmethod
    def finish(xp, acc, count):
        return acc / count

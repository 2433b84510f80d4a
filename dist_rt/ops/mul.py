"""Mul: ``C = A * B`` with broadcasting (integers wrap)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("Mul", since_opset=1)
class Mul(Binary):
    """``C = A * B`` with broadcasting (integers wrap)."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, a, b, layer):
        return xp.multiply(a, b)

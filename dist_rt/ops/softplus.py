"""Softplus: ``Y = ln(exp(X) + 1)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Softplus", since_opset=1)
class Softplus(Unary):
    """``Y = ln(exp(X) + 1)``."""

    @staticmethod
    def fn(xp, x, layer):
        # logaddexp(0, x) = ln(1 + e^x) without overflow for large x.
        return xp.logaddexp(x.dtype.type(0), x)

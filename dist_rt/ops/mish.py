"""Mish: ``Y = X * tanh(softplus(X))``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Mish", since_opset=18)
class Mish(Unary):
    """``Y = X * tanh(softplus(X))``."""

    @staticmethod
    def fn(xp, x, layer):
        return x * xp.tanh(xp.logaddexp(x.dtype.type(0), x))

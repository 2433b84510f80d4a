"""Softsign: ``Y = X / (1 + |X|)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Softsign", since_opset=1)
class Softsign(Unary):
    """``Y = X / (1 + |X|)``."""

    @staticmethod
    def fn(xp, x, layer):
        return x / (1.0 + xp.abs(x))

"""Sign: ``Y = sign(X)`` (-1, 0 or 1; NaN stays NaN)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Sign", since_opset=9)
class Sign(Unary):
    """``Y = sign(X)`` (-1, 0 or 1; NaN stays NaN)."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.sign(x)

"""Log: ``Y = ln(X)`` (-inf at 0, NaN below)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Log", since_opset=6)
class Log(Unary):
    """``Y = ln(X)`` (-inf at 0, NaN below)."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.log(x)

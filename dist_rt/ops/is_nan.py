"""IsNaN: ``Y = isnan(X)`` (bool)."""

from __future__ import annotations

from dist_rt.ops._elementwise import UnaryPredicate
from dist_rt.ops._op import register_op


@register_op("IsNaN", since_opset=9)
class IsNaN(UnaryPredicate):
    """``Y = isnan(X)`` (bool)."""

    @staticmethod
    def fn(xp, x, layer):
        return xp.isnan(x)

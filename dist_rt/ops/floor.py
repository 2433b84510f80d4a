"""Floor: ``Y = floor(X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("Floor", since_opset=6)
class Floor(Unary):
    """``Y = floor(X)``."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.floor(x)

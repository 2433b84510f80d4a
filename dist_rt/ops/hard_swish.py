"""HardSwish: ``Y = X * max(0, min(1, X / 6 + 1/2))``."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("HardSwish", since_opset=14)
class HardSwish(Unary):
    """``Y = X * max(0, min(1, X / 6 + 1/2))``."""

    @staticmethod
    def fn(xp, x, layer):
        return x * xp.clip(x / 6.0 + 0.5, 0.0, 1.0)

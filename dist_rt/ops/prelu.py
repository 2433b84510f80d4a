"""PRelu: ``Y = X`` for X >= 0, ``slope * X`` below; slope broadcasts to X."""

from __future__ import annotations

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("PRelu", since_opset=1)
class PRelu(Binary):
    """``Y = where(X < 0, slope * X, X)``; ``slope`` broadcasts (unidirectionally) to X."""

    @staticmethod
    def fn(xp, a, b, layer):
        return xp.where(a < 0, b * a, a)

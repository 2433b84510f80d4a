"""And: ``C = A and B`` (bool)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("And", since_opset=1)
class And(Binary):
    """``C = A and B`` (bool)."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, a, b, layer):
        return xp.logical_and(a, b)

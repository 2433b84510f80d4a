"""Or: ``C = A or B`` (bool)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("Or", since_opset=1)
class Or(Binary):
    """``C = A or B`` (bool)."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, a, b, layer):
        return xp.logical_or(a, b)

"""Xor: ``C = A xor B`` (bool)."""

from __future__ import annotations

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("Xor", since_opset=1)
class Xor(Binary):
    """``C = A xor B`` (bool)."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, a, b, layer):
        return xp.logical_xor(a, b)

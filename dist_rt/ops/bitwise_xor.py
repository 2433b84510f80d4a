"""BitwiseXor: ``C = A ^ B`` on integers."""

from __future__ import annotations

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("BitwiseXor", since_opset=18)
class BitwiseXor(Binary):
    """``C = A ^ B`` on integers."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, a, b, layer):
        return xp.bitwise_xor(a, b)

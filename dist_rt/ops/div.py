"""Div: ``C = A / B`` with broadcasting; integer division truncates toward zero like C."""

from __future__ import annotations

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("Div", since_opset=1)
class Div(Binary):
    """``C = A / B``. Integers: the quotient truncated toward zero (``-7 / 2 = -3``)."""

    widen_low_precision = False

    @staticmethod
    def fn(xp, a, b, layer):
        if a.dtype.kind not in "iu":
            return xp.true_divide(a, b)
        # floor_divide rounds toward -inf; step back by one where the signs differ and the
        # division is inexact. Integer division by zero is undefined in ONNX (NumPy gives 0).
        q = xp.floor_divide(a, b)
        if a.dtype.kind == "i":
            inexact = (q * b) != a
            q = q + (inexact & ((a < 0) != (b < 0))).astype(q.dtype)
        return q

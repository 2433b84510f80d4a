"""GreaterOrEqual: ``C = greater_equal(A, B)`` with broadcasting (bool)."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("GreaterOrEqual", since_opset=12)
class GreaterOrEqual(Binary):
    """``C = greater_equal(A, B)`` with broadcasting (bool)."""

    out_dtype = np.dtype(np.bool_)
    widen_low_precision = False

    @staticmethod
    def fn(xp, a, b, layer):
        return xp.greater_equal(a, b)

"""IsNaN: ``Y = isnan(X)`` (bool)."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("IsNaN", since_opset=9)
class IsNaN(Unary):
    """``Y = isnan(X)`` (bool)."""

    out_dtype = np.dtype(np.bool_)
    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        return xp.isnan(x)

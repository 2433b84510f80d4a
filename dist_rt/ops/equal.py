"""Equal: ``C = equal(A, B)`` with broadcasting (bool)."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("Equal", since_opset=1)
class Equal(Binary):
    """``C = equal(A, B)`` with broadcasting (bool)."""

    out_dtype = np.dtype(np.bool_)
    widen_low_precision = False

    @staticmethod
    def fn(xp, a, b, layer):
        return xp.equal(a, b)

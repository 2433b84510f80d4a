"""Pow: ``Z = X ** Y`` with broadcasting; the output keeps the base's dtype."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("Pow", since_opset=1)
class Pow(Binary):
    """``Z = X ** Y``. X and Y may differ in type (opset 12+); Z has X's dtype."""

    same_dtype = False

    @staticmethod
    def fn(xp, a, b, layer):
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            # Integer power in the base's type (negative exponents are undefined in ONNX).
            return xp.power(a, b.astype(a.dtype))
        # Mixed or float: compute in float64 so int64 bases/exponents keep precision.
        wide = np.float64 if a.dtype.kind in "iu" or b.dtype.kind in "iu" else a.dtype
        return xp.power(a.astype(wide), b.astype(wide))

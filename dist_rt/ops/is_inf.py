"""IsInf: ``Y = isinf(X)`` (bool); ``detect_positive``/``detect_negative`` pick the signs."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._op import register_op


@register_op("IsInf", since_opset=10)
class IsInf(Unary):
    """``Y = isinf(X)`` (bool); ``detect_positive``/``detect_negative`` pick the signs."""

    out_dtype = np.dtype(np.bool_)
    widen_low_precision = False

    @staticmethod
    def fn(xp, x, layer):
        pos = layer.attr("detect_positive", 1)
        neg = layer.attr("detect_negative", 1)
        return xp.isinf(x) & (((x > 0) & bool(pos)) | ((x < 0) & bool(neg)))

"""IsInf: ``Y = isinf(X)`` (bool); ``detect_positive``/``detect_negative`` pick the signs."""

from __future__ import annotations

from dist_rt.ops._elementwise import UnaryPredicate
from dist_rt.ops._op import register_op


@register_op("IsInf", since_opset=10)
class IsInf(UnaryPredicate):
    """``Y = isinf(X)`` (bool); ``detect_positive``/``detect_negative`` pick the signs."""

    @staticmethod
    def fn(xp, x, layer):
        pos = layer.attr("detect_positive", 1)
        neg = layer.attr("detect_negative", 1)
        return xp.isinf(x) & (((x > 0) & bool(pos)) | ((x < 0) & bool(neg)))

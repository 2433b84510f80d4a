"""ReduceL2: ``Y = sqrt(sum(X^2, axes))``."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceL2", since_opset=1)
class ReduceL2(Reduce):
    """``Y = sqrt(sum(X^2, axes))``."""

    @staticmethod
    def reduce(xp, x, axes, keepdims):
        return xp.sqrt(xp.sum(x * x, axis=axes, keepdims=keepdims))

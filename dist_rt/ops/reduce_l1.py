"""ReduceL1: ``Y = sum(|X|, axes)``."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceL1", since_opset=1)
class ReduceL1(Reduce):
    """``Y = sum(|X|, axes)``."""

    @staticmethod
    def reduce(xp, x, axes, keepdims):
        return xp.sum(xp.abs(x), axis=axes, keepdims=keepdims)

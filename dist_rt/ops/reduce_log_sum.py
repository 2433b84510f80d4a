"""ReduceLogSum: ``Y = log(sum(X, axes))``; an empty set gives -inf."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceLogSum", since_opset=1)
class ReduceLogSum(Reduce):
    """``Y = log(sum(X, axes))``; an empty set gives -inf."""

    identity = -np.inf

    @staticmethod
    def reduce(xp, x, axes, keepdims):
        return xp.log(xp.sum(x, axis=axes, keepdims=keepdims))

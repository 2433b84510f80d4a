"""ReduceLogSumExp: ``Y = log(sum(exp(X), axes))``; an empty set gives -inf."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceLogSumExp", since_opset=1)
class ReduceLogSumExp(Reduce):
    """``Y = log(sum(exp(X), axes))``; an empty set gives -inf."""

    identity = -np.inf

    @staticmethod
    def reduce(xp, x, axes, keepdims):
        # Shift by the max so exp never overflows; a -inf max (all -inf) shifts by 0.
        peak = xp.max(x, axis=axes, keepdims=True)
        peak = xp.where(xp.isfinite(peak), peak, 0)
        total = xp.sum(xp.exp(x - peak), axis=axes, keepdims=True)
        y = xp.log(total) + peak
        return y if keepdims else xp.squeeze(y, axis=axes)

"""Softmax: ``Y = exp(X) / sum(exp(X))`` along ``axis``."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._softmax import SoftmaxLike


@register_op("Softmax", since_opset=1)
class Softmax(SoftmaxLike):
    """``Y = exp(X - max) / sum(exp(X - max))`` along ``axis`` (max-shifted: no overflow)."""

    @staticmethod
    def normalize(xp, x, axis):
        e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
        return e / xp.sum(e, axis=axis, keepdims=True)

"""LogSoftmax: ``Y = X - log(sum(exp(X)))`` along ``axis``."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._softmax import SoftmaxLike


@register_op("LogSoftmax", since_opset=1)
class LogSoftmax(SoftmaxLike):
    """``Y = (X - max) - log(sum(exp(X - max)))`` along ``axis``."""

    @staticmethod
    def normalize(xp, x, axis):
        shifted = x - xp.max(x, axis=axis, keepdims=True)
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))

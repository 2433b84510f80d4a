"""Hardmax: 1 at the first maximum along ``axis``, 0 elsewhere."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._softmax import SoftmaxLike


@register_op("Hardmax", since_opset=1)
class Hardmax(SoftmaxLike):
    """``Y = one_hot(argmax(X, axis))`` along ``axis`` (ties: the first index)."""

    @staticmethod
    def normalize(xp, x, axis):
        idx = xp.expand_dims(xp.argmax(x, axis=axis), axis)
        positions = xp.arange(x.shape[axis]).reshape(
            [-1 if i == axis else 1 for i in range(x.ndim)])
        return (positions == idx).astype(x.dtype)

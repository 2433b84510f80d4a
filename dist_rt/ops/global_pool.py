"""GlobalAveragePool, GlobalMaxPool, GlobalLpPool: reduce every spatial dim to size 1."""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._window import spatial_shape


class _GlobalPool(Op):
    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        xs = spatial_shape(layer, x.shape)
        return [TensorDesc(x.dtype, None if xs is None else xs[:2] + (1,) * (len(xs) - 2))]

    @classmethod
    def _reduce(cls, layer, x, axes, xp):
        raise NotImplementedError

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        spatial_shape(layer, x.shape)
        axes = tuple(range(2, x.ndim))
        return [cls._reduce(layer, x, axes, rt.xp).astype(x.dtype, copy=False)]


@register_op("GlobalAveragePool", since_opset=1)
class GlobalAveragePool(_GlobalPool):
    """Mean over all spatial dims: (N, C, *D) -> (N, C, 1, ...)."""

    @classmethod
    def _reduce(cls, layer, x, axes, xp):
        return x.mean(axis=axes, keepdims=True, dtype="float32" if x.dtype.itemsize < 4
                      else x.dtype)


@register_op("GlobalMaxPool", since_opset=1)
class GlobalMaxPool(_GlobalPool):
    """Max over all spatial dims: (N, C, *D) -> (N, C, 1, ...)."""

    @classmethod
    def _reduce(cls, layer, x, axes, xp):
        return x.max(axis=axes, keepdims=True)


@register_op("GlobalLpPool", since_opset=1)
class GlobalLpPool(_GlobalPool):
    """p-norm over all spatial dims (attribute ``p``, default 2)."""

    @classmethod
    def _reduce(cls, layer, x, axes, xp):
        p = float(layer.attr("p", 2))
        acc = x.astype("float32") if x.dtype.itemsize < 4 else x
        return (xp.abs(acc) ** p).sum(axis=axes, keepdims=True) ** (1.0 / p)

"""Det: determinant of the trailing square matrices."""

from __future__ import annotations

from dist_rt.ops._extra_util import fail
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("Det", since_opset=11)
class Det(Op):
    """``Y[...] = det(X[..., :, :])`` for X of shape (..., M, M)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        shape = inputs[0].shape
        if shape is None:
            return [TensorDesc(inputs[0].dtype, None)]
        if len(shape) < 2:
            raise fail(layer, f"input has shape {shape}, expected (..., M, M)")
        return [TensorDesc(inputs[0].dtype, tuple(shape[:-2]))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
            raise fail(layer, f"input has shape {x.shape}, expected (..., M, M)")
        return [rt.xp.linalg.det(x.astype("float64")).astype(x.dtype)]

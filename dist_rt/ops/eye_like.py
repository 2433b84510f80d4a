"""EyeLike: a 2-D tensor like the input with ones on the ``k``-th diagonal."""

from __future__ import annotations

from dist_rt import dtypes
from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import fmt, here


def _dtype(layer, like):
    dtype = layer.attr("dtype")
    return like if dtype is None else dtypes.from_onnx(int(dtype))


@register_op("EyeLike", since_opset=9)
class EyeLike(Op):
    """Attributes ``dtype`` (ONNX type, default the input's) and ``k`` (diagonal offset)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        if x.shape is not None and len(x.shape) != 2:
            raise ShapeError(f"{here(layer)}input {fmt(x.shape)} must be 2-D")
        return [TensorDesc(_dtype(layer, x.dtype), x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        if x.ndim != 2:
            raise ShapeError(f"{here(layer)}input {fmt(x.shape)} must be 2-D")
        n, m = x.shape
        return [rt.xp.eye(n, m, k=int(layer.attr("k", 0)), dtype=_dtype(layer, x.dtype))]

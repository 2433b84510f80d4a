"""SwiGLU: ``Y = A * sigmoid(alpha * A) * B`` (A and B of one shape, no broadcasting)."""

from __future__ import annotations

from dist_rt.ops._elementwise import check_same_dtype, widen
from dist_rt.ops._extra_util import fail
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("SwiGLU", since_opset=28)
class SwiGLU(Op):
    """``Y = Swish_alpha(A) * B``; A and B must have identical shapes and dtypes."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        check_same_dtype(layer, inputs, (0, 1))
        a, b = inputs
        if a.is_static and b.is_static and a.shape != b.shape:
            raise fail(layer, f"A has shape {a.shape} and B {b.shape}; they must be equal")
        return [TensorDesc(a.dtype, a.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        a, b = inputs
        if a.shape != b.shape:
            raise fail(layer, f"A has shape {a.shape} and B {b.shape}; they must be equal")
        alpha = float(layer.attr("alpha", 1.0))
        wa = widen(a)
        gate = (1 / (1 + rt.xp.exp(-alpha * wa))).astype(a.dtype)
        return [(a * gate * b).astype(a.dtype)]

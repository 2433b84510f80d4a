"""Relu: ``max(x, 0)``."""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("Relu", since_opset=6)
class Relu(Op):
    """``Y = max(X, 0)``, elementwise."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        return [TensorDesc(inputs[0].dtype, inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        return [rt.xp.maximum(x, x.dtype.type(0))]

"""Swish: ``Y = X * sigmoid(alpha * X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import widen
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("Swish", since_opset=24)
class Swish(Op):
    """``Y = X * sigmoid(alpha * X)``, elementwise (``alpha`` default 1)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        return [TensorDesc(inputs[0].dtype, inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = widen(inputs[0])
        alpha = float(layer.attr("alpha", 1.0))
        return [(x / (1 + rt.xp.exp(-alpha * x))).astype(inputs[0].dtype)]

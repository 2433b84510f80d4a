"""Swish: ``Y = X * sigmoid(alpha * X)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import widen
from dist_rt.ops._op import SameShapeOp, register_op


@register_op("Swish", since_opset=24)
class Swish(SameShapeOp):
    """``Y = X * sigmoid(alpha * X)``, elementwise (``alpha`` default 1)."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = widen(inputs[0])
        alpha = float(layer.attr("alpha", 1.0))
        return [(x / (1 + rt.xp.exp(-alpha * x))).astype(inputs[0].dtype)]

"""Relu: ``max(x, 0)``."""

from __future__ import annotations

from dist_rt.ops._op import SameShapeOp, register_op


@register_op("Relu", since_opset=6)
class Relu(SameShapeOp):
    """``Y = max(X, 0)``, elementwise."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        return [rt.xp.maximum(x, x.dtype.type(0))]

"""Binarizer (ai.onnx.ml): 1 where ``x > threshold``, else 0, in the input's dtype."""

from __future__ import annotations

from dist_rt.ops._op import SameShapeOp, register_op


@register_op("Binarizer", since_opset=1, domain="ai.onnx.ml")
class Binarizer(SameShapeOp):
    """``y = (x > threshold).astype(x.dtype)``."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        return [(x > float(layer.attr("threshold", 0.0))).astype(x.dtype)]

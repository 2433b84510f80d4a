"""ArrayFeatureExtractor (ai.onnx.ml): select columns of the last axis by index.

A 1-D input gives a ``[1, len(indices)]`` output (as onnxruntime does).
"""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("ArrayFeatureExtractor", since_opset=1, domain="ai.onnx.ml")
class ArrayFeatureExtractor(Op):
    """``y = x[..., indices.ravel()]``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        return [TensorDesc(inputs[0].dtype, None)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x, indices = inputs
        index = indices.reshape(-1)
        out = rt.xp.take(x, index, axis=-1)
        return [out.reshape(1, -1) if x.ndim == 1 else out]

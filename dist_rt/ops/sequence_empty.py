"""SequenceEmpty: an empty sequence of element type ``dtype`` (default float32)."""

from __future__ import annotations

from dist_rt import dtypes
from dist_rt.ops._op import Op, TensorDesc, register_op


@register_op("SequenceEmpty", since_opset=11)
class SequenceEmpty(Op):
    """``[]``, typed by the ``dtype`` attribute (an ONNX TensorProto data type)."""

    deterministic = False  # a fresh list each run

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(dtypes.from_onnx(int(layer.attr("dtype", 1))), None, None,
                           "sequence")]

    @classmethod
    def _run(cls, layer, inputs, rt):
        return [[]]

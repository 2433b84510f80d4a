"""SequenceConstruct: a sequence of its input tensors (same element type)."""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, register_op


@register_op("SequenceConstruct", since_opset=11)
class SequenceConstruct(Op):
    """``[x0, x1, ...]``."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(inputs[0].dtype if inputs else None, None, None, "sequence")]

    @classmethod
    def _run(cls, layer, inputs, rt):
        return [list(inputs)]

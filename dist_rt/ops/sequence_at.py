"""SequenceAt: the tensor at ``position`` (negative counts from the end)."""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, register_op
from dist_rt.ops.sequence_insert import seq_position


@register_op("SequenceAt", since_opset=11)
class SequenceAt(Op):
    """``s[p]``."""

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(inputs[0].dtype, None)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        return [inputs[0][seq_position(layer, inputs[1], len(inputs[0]))]]

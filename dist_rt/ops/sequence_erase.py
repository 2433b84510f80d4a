"""SequenceErase: a copy of the sequence without the tensor at ``position`` (default last)."""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, register_op
from dist_rt.ops.sequence_insert import seq_position


@register_op("SequenceErase", since_opset=11)
class SequenceErase(Op):
    """``s[:p] + s[p+1:]``."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(inputs[0].dtype, None, None, "sequence")]

    @classmethod
    def _run(cls, layer, inputs, rt):
        seq = list(inputs[0])
        pos = len(seq) - 1 if len(inputs) < 2 or inputs[1] is None else \
            seq_position(layer, inputs[1], len(seq))
        del seq[pos]
        return [seq]

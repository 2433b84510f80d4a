"""ConcatFromSequence: concatenate (``new_axis=0``) or stack (``new_axis=1``) a sequence."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, register_op


@register_op("ConcatFromSequence", since_opset=11)
class ConcatFromSequence(Op):
    """``concatenate(s, axis)`` or ``stack(s, axis)``."""

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(inputs[0].dtype, None)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        seq = inputs[0]
        if not seq:
            raise ShapeError(f"layer '{layer.name}' (ConcatFromSequence): the sequence is empty")
        axis = int(layer.attr("axis"))
        if int(layer.attr("new_axis", 0)):
            rank = seq[0].ndim + 1
            return [rt.xp.stack(seq, axis=axis % rank)]
        return [rt.xp.concatenate(seq, axis=axis % max(seq[0].ndim, 1))]

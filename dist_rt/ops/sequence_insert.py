"""SequenceInsert: a copy of the sequence with a tensor inserted at ``position``."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, register_op
from dist_rt.ops._subgraph import scalar


def seq_position(layer, position, length: int, *, insert: bool = False) -> int:
    """A sequence index in ``[-n, n-1]`` (``[-n, n]`` for insert) mapped to ``[0, n]``.

    Raises:
        ShapeError: The position is out of range.
    """
    pos = int(scalar(position))
    high = length if insert else length - 1
    if not -length <= pos <= high:
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): position {pos} is out of "
                         f"range for a sequence of length {length}")
    return pos + length if pos < 0 else pos


@register_op("SequenceInsert", since_opset=11)
class SequenceInsert(Op):
    """``s[:p] + [x] + s[p:]``; ``position`` defaults to the end."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(inputs[0].dtype or inputs[1].dtype, None, None, "sequence")]

    @classmethod
    def _run(cls, layer, inputs, rt):
        seq, value = list(inputs[0]), inputs[1]
        pos = len(seq) if len(inputs) < 3 or inputs[2] is None else \
            seq_position(layer, inputs[2], len(seq), insert=True)
        seq.insert(pos, value)
        return [seq]

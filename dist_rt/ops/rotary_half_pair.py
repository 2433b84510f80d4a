"""dist_rt::RotaryHalfPair: two RotaryHalf rotations sharing one cos/sin pair, in one layer.

``(Q', K') = (RotaryHalf(Q, cos, sin), RotaryHalf(K, cos, sin))``: each output is exactly
what :class:`dist_rt.ops.rotary_half.RotaryHalf` gives for its operand. A Llama layer rotates
its queries and keys with the same tables; ``builder/passes/fuse_rope_pair.py`` merges the
two layers into this one, which the CUDA backend runs as one kernel launch instead of two
(at one decode token those launches are pure latency). Q and K may have different shapes
(grouped-query attention gives K fewer heads).
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op
from dist_rt.ops.rotary_half import RotaryHalf

#: Input names, for messages.
INPUTS = ("q", "k", "cos", "sin")


def _rotated(layer, i: int, x: TensorDesc, cos: TensorDesc, sin: TensorDesc) -> TensorDesc:
    """What RotaryHalf(x, cos, sin) gives for operand ``i`` (0: q, 1: k).

    Raises:
        ShapeError: ``x`` does not broadcast with the tables, or its last dim is odd.
    """
    where = f"layer '{layer.name}' ({layer.op_type}): input {i} ({INPUTS[i]})"
    try:
        shape = broadcast_shapes(layer, broadcast_shapes(layer, x.shape, cos.shape), sin.shape)
    except ShapeError as exc:
        raise ShapeError(f"{where} has shape {x.shape}, which does not broadcast with cos "
                         f"{cos.shape} and sin {sin.shape}") from exc
    d = x.shape[-1] if x.shape else None
    if isinstance(d, int) and d % 2:
        raise ShapeError(f"{where} has shape {x.shape}: its last dim {d} must be even")
    return TensorDesc(x.dtype, shape)


@register_op("RotaryHalfPair", since_opset=1, domain="dist_rt")
class RotaryHalfPair(Op):
    """``(RotaryHalf(q, cos, sin), RotaryHalf(k, cos, sin))``."""

    @classmethod
    def infer(cls, layer, inputs):
        """Outputs like q and k broadcast with the tables; errors name the operand."""
        check_inputs(layer, inputs, 4)
        for i, t in enumerate(inputs):
            if t is None:
                raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): input {i} "
                                 f"({INPUTS[i]}) is missing")
        q, k, cos, sin = inputs
        return [_rotated(layer, 0, q, cos, sin), _rotated(layer, 1, k, cos, sin)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        q, k, cos, sin = inputs
        # RotaryHalf's reference for each operand: the pair computes exactly what the two
        # layers it replaces did.
        return [*RotaryHalf._run(layer, [q, cos, sin], rt),
                *RotaryHalf._run(layer, [k, cos, sin], rt)]

"""dist_rt::RotaryHalf: rotary position embedding in HF Llama's ``rotate_half`` form.

``Y = X * cos + rotate_half(X) * sin`` with ``rotate_half(X) = concat(-X2, X1)`` over the
last axis (``X1``/``X2`` its halves), cos/sin broadcast to X (typically (1, 1, S, D) tables
against X (B, H, S, D)). This is what exporters write for ``apply_rotary_pos_emb`` (two
Slices, Neg, Concat, two Muls, Add); ``builder/passes/fuse_rope.py`` folds it into this op,
which the CUDA backend runs as one elementwise kernel.

Kept apart from ONNX's RotaryEmbedding (opset 23), which takes half-width caches of shape
(B, S, D/2) and position ids: the exported pattern carries full-width (1, 1, S, D) tables,
and rewriting them would add layers instead of removing them.

16-bit inputs compute in float32 and round once.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import widen
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op


@register_op("RotaryHalf", since_opset=1, domain="dist_rt")
class RotaryHalf(Op):
    """``Y = X * cos + concat(-X[..., D/2:], X[..., :D/2]) * sin`` (cos/sin broadcast)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        x, cos, sin = inputs
        shape = broadcast_shapes(layer, x.shape, cos.shape)
        shape = broadcast_shapes(layer, shape, sin.shape)
        d = None if x.shape is None or not x.shape else x.shape[-1]
        if isinstance(d, int) and d % 2:
            raise ShapeError(f"layer '{layer.name}' (RotaryHalf): last dim {d} of input "
                             f"{x.shape} must be even")
        return [TensorDesc(x.dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, cos, sin = inputs
        half = x.shape[-1] // 2
        xf = widen(x)
        rotated = xp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
        y = xf * widen(cos) + rotated * widen(sin)
        return [y.astype(x.dtype, copy=False)]

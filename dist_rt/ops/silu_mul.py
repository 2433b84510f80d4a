"""dist_rt::Silu and dist_rt::SiluMul: the SiLU activation and the gated-MLP product.

``Silu(X) = X * sigmoid(X)`` (PyTorch's ``F.silu``, which opset-18 exporters write as
``Mul(X, Sigmoid(X))``) and ``SiluMul(A, B) = silu(A) * B``, the gate of a Llama MLP
(``silu(gate(x)) * up(x)``). Both are targets of ``builder/passes/fuse_silu.py``; on the
CUDA backend SiluMul is one elementwise kernel instead of three.

16-bit inputs compute in float32 and round once, like the other elementwise ops.
"""

from __future__ import annotations

from dist_rt.ops._elementwise import quiet, widen
from dist_rt.ops._op import (
    Op,
    SameShapeOp,
    TensorDesc,
    broadcast_shapes,
    check_inputs,
    register_op,
)


def silu(xp, x):
    """``x * sigmoid(x)`` with ``exp(-|x|)`` so that no branch overflows."""
    e = xp.exp(-xp.abs(x))
    return x * xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@register_op("Silu", since_opset=1, domain="dist_rt")
class Silu(SameShapeOp):
    """``Y = X * sigmoid(X)``."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        with quiet(rt.xp):
            y = silu(rt.xp, widen(x))
        return [y.astype(x.dtype, copy=False)]


@register_op("SiluMul", since_opset=1, domain="dist_rt")
class SiluMul(Op):
    """``Y = silu(A) * B`` (B broadcasts to A, NumPy-style)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        a, b = inputs
        return [TensorDesc(a.dtype, broadcast_shapes(layer, a.shape, b.shape))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        a, b = inputs
        with quiet(rt.xp):
            y = silu(rt.xp, widen(a)) * widen(b)
        return [y.astype(a.dtype, copy=False)]

"""dist_rt::MatMulSiluMul: a gated MLP's up-projection and gate in one layer.

``Y = silu(A @ B[:, :I]) * (A @ B[:, I:])`` for B of shape (K, 2I): the merged gate/up
projection of a Llama MLP (``builder/passes/fuse_parallel_matmul.py`` concatenates the two
weights) followed by ``SiluMul`` of its two halves. ``builder/passes/fuse_matmul_silu.py``
makes the three layers (MatMul, Split, SiluMul) one, so that at decode the CUDA backend's
GEMV computes a gate column and its up column in one block and writes only
``silu(g) * u`` (``runtime/cuda/gemv.py``): the (M, 2I) intermediate and the SiluMul
launch go away.

Values are those of the unfused layers on CUDA: the product is rounded to A's dtype, as a
16-bit MatMul's output is there, and the gate is computed as SiluMul computes it (float32
for 16-bit inputs, one rounding). (NumPy's matmul of two bf16 arrays returns float32, so on
the CPU an unfused bf16 MatMul skips that rounding; the pass only runs for CUDA builds.)

Inputs:
    A: (..., K), a float type.
    B: (K, 2I), A's dtype.

Output: (..., I), A's dtype.
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops.silu_mul import SiluMul


def _fail(layer, what: str) -> ShapeError:
    return ShapeError(f"layer '{layer.name}' (MatMulSiluMul): {what}")


def output_shape(layer, a: TensorDesc, b: TensorDesc) -> tuple | None:
    """(..., I) for A (..., K) and B (K, 2I); None when A's rank is unknown.

    Raises:
        ShapeError: Names the input, its shape or dtype, and what was expected.
    """
    if None not in (a.dtype, b.dtype) and np.dtype(a.dtype) != np.dtype(b.dtype):
        raise _fail(layer, f"input 1 (B) has dtype {np.dtype(b.dtype)}, expected "
                           f"{np.dtype(a.dtype)} like A")
    if b.shape is not None:
        if len(b.shape) != 2:
            raise _fail(layer, f"input 1 (B) has shape {tuple(b.shape)}, expected (K, 2I)")
        if isinstance(b.shape[1], int) and b.shape[1] % 2:
            raise _fail(layer, f"input 1 (B) has {b.shape[1]} columns, expected an even "
                               f"number (gate and up halves)")
    if a.shape is None:
        return None
    if not a.shape:
        raise _fail(layer, "input 0 (A) is a scalar, expected rank >= 1")
    if b.shape is None:
        return (*a.shape[:-1], None)
    k, n2 = b.shape
    if isinstance(a.shape[-1], int) and isinstance(k, int) and a.shape[-1] != k:
        raise _fail(layer, f"inner dims differ: input 0 (A) has shape {tuple(a.shape)}, "
                           f"input 1 (B) has shape {tuple(b.shape)}")
    return (*a.shape[:-1], n2 // 2 if isinstance(n2, int) else None)


@register_op("MatMulSiluMul", since_opset=1, domain="dist_rt")
class MatMulSiluMul(Op):
    """``Y = silu(A @ B_gate) * (A @ B_up)``; see the module docstring."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        a, b = inputs
        return [TensorDesc(a.dtype, output_shape(layer, a, b))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        check_inputs(layer, inputs, 2)
        a, b = inputs
        output_shape(layer, TensorDesc(a.dtype, tuple(a.shape)),
                     TensorDesc(b.dtype, tuple(b.shape)))
        y = rt.xp.matmul(a, b).astype(a.dtype, copy=False)
        half = b.shape[1] // 2
        return SiluMul._run(layer, [y[..., :half], y[..., half:]], rt)

"""dist_rt::MatMulCast: ``Y = Cast(MatMul(A, B), to)``, accumulated in float32, rounded once.

The target of ``builder/passes/fuse_matmul_cast.py``: a Llama's fp16/bf16 lm_head MatMul
followed by the Cast of the logits to float32 becomes one layer, so the CUDA backend writes
the float32 logits straight from cuBLAS's float32 accumulator
(``dist_rt/runtime/cuda/matmul_cast.py``) instead of writing 16-bit logits, reading them
back and writing them again as float32. The result is also closer to the exact product:
the 16-bit intermediate rounding is gone.

This reference multiplies in float32 (``xp.matmul`` on float32 copies of A and B: float32
accumulation, as cuBLAS's ``CUBLAS_COMPUTE_32F``) and rounds the product once to ``to``.

Inputs:
    A: (..., M, K) or (K,), float16, bfloat16 or float32.
    B: (..., K, N) or (K,), A's dtype. Batch dims broadcast and 1-D operands are promoted
        then squeezed, as in ONNX MatMul (``numpy.matmul``).

Attribute ``to``: the output's ONNX ``TensorProto`` data type (a float type), as in Cast.

Output: ``matmul(A, B)``'s shape, of dtype ``to``.
"""

from __future__ import annotations

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import ShapeError
from dist_rt.ops._cast import target_dtype
from dist_rt.ops._op import Op, Shape, TensorDesc, broadcast_shapes, check_inputs, register_op

#: Input dtypes the op takes: the 16-bit floats it exists for, and float32 (float64 would
#: lose precision to the float32 accumulation, so it is refused rather than degraded).
INPUT_DTYPES = frozenset({np.dtype(np.float16), dtypes.bfloat16, np.dtype(np.float32)})


def _fail(layer, what: str) -> ShapeError:
    return ShapeError(f"layer '{layer.name}' (MatMulCast): {what}")


def output_dtype(layer) -> np.dtype:
    """The dtype of attribute ``to``.

    Raises:
        ShapeError: ``to`` is missing, unknown, or not a float type.
    """
    dtype = target_dtype(layer, layer.attr("to"))
    if not dtypes.is_float(dtype):
        raise _fail(layer, f"attribute 'to' is {dtype}, expected a float type")
    return dtype


def check(layer, a: TensorDesc, b: TensorDesc, same_dtype: bool = True) -> Shape:
    """Check the operands' dtypes and (possibly symbolic) shapes.

    Args:
        layer: The layer (for messages).
        a: Input 0.
        b: Input 1.
        same_dtype: Also require A and B of one dtype (build time). Run time only requires
            each to be an input dtype: NumPy's matmul of two bf16 arrays returns float32, so
            on the CPU an upstream bf16 MatMul hands over float32 arrays, which the float32
            math here takes as they are.

    Returns:
        The output shape (None when a rank is unknown).

    Raises:
        ShapeError: Names the input, what it is and what was expected.
    """
    for i, (x, name) in enumerate(((a, "A"), (b, "B"))):
        if x.dtype is not None and np.dtype(x.dtype) not in INPUT_DTYPES:
            raise _fail(layer, f"input {i} ({name}) has dtype {np.dtype(x.dtype)}, expected "
                               f"float16, bfloat16 or float32")
        if x.shape is not None and not x.shape:
            raise _fail(layer, f"input {i} ({name}) is a scalar, expected rank >= 1")
    if same_dtype and None not in (a.dtype, b.dtype) and a.dtype != b.dtype:
        raise _fail(layer, f"input 1 (B) has dtype {np.dtype(b.dtype)}, expected "
                           f"{np.dtype(a.dtype)} like A")
    if a.shape is None or b.shape is None:
        return None
    sa = [1, *a.shape] if len(a.shape) == 1 else list(a.shape)
    sb = [*b.shape, 1] if len(b.shape) == 1 else list(b.shape)
    if isinstance(sa[-1], int) and isinstance(sb[-2], int) and sa[-1] != sb[-2]:
        raise _fail(layer, f"inner dims differ: input 0 (A) has shape {tuple(a.shape)}, "
                           f"input 1 (B) has shape {tuple(b.shape)}")
    out = [*broadcast_shapes(layer, tuple(sa[:-2]), tuple(sb[:-2])), sa[-2], sb[-1]]
    if len(a.shape) == 1:
        out.pop(-2)
    if len(b.shape) == 1:
        out.pop(-1)
    return tuple(out)


@register_op("MatMulCast", since_opset=1, domain="dist_rt")
class MatMulCast(Op):
    """``Y = Cast(MatMul(A, B), to)`` with one rounding; see the module docstring."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        return [TensorDesc(output_dtype(layer), check(layer, *inputs))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        check_inputs(layer, inputs, 2)
        a, b = inputs
        to = output_dtype(layer)
        check(layer, TensorDesc(a.dtype, tuple(a.shape)), TensorDesc(b.dtype, tuple(b.shape)),
              same_dtype=False)
        f32 = np.float32
        y = rt.xp.matmul(a.astype(f32, copy=False), b.astype(f32, copy=False))
        return [y.astype(to, copy=False)]

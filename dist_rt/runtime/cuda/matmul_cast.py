"""dist_rt::MatMulCast on one direct cuBLAS GEMM that writes float32 from 16-bit operands.

Why: a 16-bit Llama's last layers are ``lm_head MatMul -> Cast(float32)`` (the precision
pass wraps float32 outputs that way). At batch 8 x 2048 tokens and vocab 32000 the GEMM
writes 1 GiB of fp16 logits, the Cast reads them back and writes 2 GiB of fp32: ~2.5 ms of a
58 ms step on an H100. ``builder/passes/fuse_matmul_cast.py`` makes the pair one
MatMulCast layer, and here cuBLAS writes the fp32 logits directly (``cublasGemmEx`` with
Atype = Btype = CUDA_R_16F or CUDA_R_16BF, Ctype = CUDA_R_32F, ``CUBLAS_COMPUTE_32F``, see
:func:`dist_rt.runtime.cuda.cublas.matmul2d`): 2 GiB written once, the 1 GiB fp16 write and
read and the Cast's launch saved, and no fp16 rounding of the accumulator.

Like :func:`dist_rt.runtime.cuda.kernels.matmul` it is direct cuBLAS (capturable in a CUDA
graph) for (..., M, K) @ (K, N), the rows flattened into one 2-D GEMM; decode-sized rows
(up to ``gemv.MAX_ROWS``) against a weight stored (N, K) take the GEMV kernel (:mod:`.gemv`),
which writes float32 the same way. Anything else
(batched or 1-D B, mixed dtypes, an output dtype cuBLAS does not write from these inputs)
returns None and the generic op runs: float32 ``cupy.matmul``, then the cast, the same
values but not capturable.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from dist_rt import dtypes
from dist_rt.errors import ModelError
from dist_rt.runtime.cuda import cublas, gemv, l2_prefetch

F32 = np.dtype(np.float32)


def _target(layer: Any) -> np.dtype | None:
    """The dtype of attribute ``to``, or None when missing or unknown (the op reports it)."""
    code = layer.attr("to")
    try:
        return None if code is None else dtypes.from_onnx(int(code))
    except ModelError:
        return None


def matmul_cast(layer: Any, inputs: list, rt: Any) -> list | None:
    """dist_rt::MatMulCast as one cuBLAS GEMM: (..., M, K) @ (K, N) -> (..., M, N) in ``to``.

    Args:
        layer: The MatMulCast layer (attribute ``to``).
        inputs: A and B, device arrays.
        rt: The run context (its ``l2_prefetch`` entry for this layer, if any, goes to the
            GEMV; cuBLAS runs on CuPy's current stream).

    Returns:
        ``[Y]``, or None for the generic op (see the module docstring).
    """
    a, b = inputs
    to = _target(layer)
    if (to is None or a.dtype != b.dtype or cublas.cuda_type(a.dtype) is None
            or to not in (a.dtype, F32) or a.ndim < 2 or b.ndim != 2
            or a.shape[-1] != b.shape[0]):
        return None
    if a.shape[-1] == 0:  # an empty sum; CuPy cannot reshape size 0 to (-1, 0)
        return [cupy.zeros((*a.shape[:-1], b.shape[1]), dtype=to)]
    if a.ndim > 2 and not a.flags.c_contiguous:
        a = cupy.ascontiguousarray(a)  # rows must flatten into one (M, K) view
    a2 = a.reshape(-1, a.shape[-1])
    # The decode GEMV declines (None) above gemv.MAX_ROWS rows or for another layout.
    y = gemv.gemv(a2, b, out_dtype=to, prefetch=l2_prefetch.lookup(layer, rt))
    if y is None:
        y = cublas.matmul2d(a2, b, out_dtype=to)
    return [y.reshape(*a.shape[:-1], b.shape[1])]

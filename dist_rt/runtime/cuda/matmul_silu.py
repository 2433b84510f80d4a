"""dist_rt::MatMulSiluMul on CUDA: the gate/up GEMV writing ``silu(g) * u``, else GEMM + gate.

At decode (up to :data:`gemv.MAX_ROWS` rows against the merged gate/up weight stored
(2I, K)) one GEMV computes gate column j and up column j in the same block and writes only
``silu(g) * u`` (:func:`gemv.gemv` with ``silu_gate``): the SiluMul launch and the (M, 2I)
intermediate go away. Otherwise the layer runs what the unfused layers ran: the MatMul
path of :func:`dist_rt.runtime.cuda.kernels.matmul` (cuBLAS, or the plain GEMV), then the
``silu_mul8`` kernel on the two halves as strided views. Both round g and u to the input
dtype before the gate, so the two paths and the unfused layers give the same values.
"""

from __future__ import annotations

from dist_rt.ops.silu_mul import SiluMul
from dist_rt.runtime.cuda import cublas, gemv, l2_prefetch


def matmul_silu_mul(layer, inputs, rt) -> list | None:
    """``[Y]`` of the fused layer, or None for the generic op (nothing launched then).

    Args:
        layer: The MatMulSiluMul layer.
        inputs: A (..., K) and B (K, 2I), device arrays of one 16-bit or float dtype.
        rt: The run context (the layer's ``l2_prefetch`` entry goes to the GEMV).
    """
    from dist_rt.runtime.cuda.kernels import matmul  # noqa: PLC0415 - kernels imports us

    a, b = inputs
    if (a.ndim < 1 or b.ndim != 2 or a.dtype != b.dtype or cublas.cuda_type(a.dtype) is None
            or b.shape[1] % 2 or a.shape[-1] != b.shape[0]):
        return None
    if a.flags.c_contiguous:  # the GEMV declines above gemv.MAX_ROWS rows
        y = gemv.gemv(a.reshape(-1, a.shape[-1]), b, prefetch=l2_prefetch.lookup(layer, rt),
                      silu_gate=True)
        if y is not None:
            return [y.reshape(*a.shape[:-1], b.shape[1] // 2)]
    h = matmul(layer, [a, b], rt)
    # Never None after a product: the generic op would multiply a second time.
    return None if h is None else gate_halves(layer, h[0], rt)


def gate_halves(layer, h, rt) -> list:
    """``[silu(g) * u]`` for the gate/up product h (..., 2I), g and u its two halves (strided
    views): the ``silu_mul8`` kernel, else the generic SiluMul. Also the tail of the
    ``lt<i>`` tactics (:mod:`.tactics`)."""
    from dist_rt.runtime.cuda.kernels import silu_mul  # noqa: PLC0415 - kernels imports us

    half = h.shape[-1] // 2
    halves = [h[..., :half], h[..., half:]]
    return silu_mul(layer, halves, rt) or SiluMul._run(layer, halves, rt)

"""Direct cuBLAS GEMMs (ctypes) that work while a stream is being captured into a CUDA graph.

Why not ``cupy.matmul`` or ``cupy_backends.cuda.libs.cublas``: every CuPy cuBLAS wrapper
first calls ``cublas.setStream(handle, current_stream)``, and CuPy's ``setStream`` raises
``NotImplementedError`` whenever that stream is capturing. cuBLAS itself supports capture
(the cuBLAS docs, "CUDA Graphs support"), provided no workspace is allocated inside the
capture. So this module keeps **its own** handle (``cublasCreate_v2`` on the libcublas the
process already loaded for CuPy, or the first one found on the library path), sets the
stream through the C API (which does not check capture), and gives the handle a fixed
workspace allocated once outside any capture (``cublasSetWorkspace_v2``), so a GEMM never
calls ``cudaMalloc`` while capturing.

Row-major trick: cuBLAS is column-major, so ``C = A @ B`` (row-major M x N) is computed as
``C^T = B^T A^T`` in column-major terms: ``gemm(N, N, m=N, n=M, k=K, B, A, C)``. All GEMMs
here use ``CUBLAS_COMPUTE_32F`` (float32 accumulation; tensor cores for fp16/bf16) and
``CUBLAS_GEMM_DEFAULT``. The GEMM tactics the builder times are cuBLASLt's per-problem
algorithm lists (:mod:`dist_rt.runtime.cuda.cublaslt`), not ``cublasGemmAlgo_t`` hints,
which recent GPUs ignore.
"""

from __future__ import annotations

import ctypes

import cupy
import numpy as np

from dist_rt.errors import ExecutionError
from dist_rt.runtime.cuda import _libs
from dist_rt.runtime.cuda._libs import (
    COMPUTE_32F,
    OP_N,
    OP_T,
    b_operand,
    check,
    cuda_type,
    ld,
    row_major,
)

_GEMM_DEFAULT = -1         # CUBLAS_GEMM_DEFAULT (tensor ops allowed for 16-bit types)
#: Workspace per handle; cuBLAS recommends 32 MiB on Hopper.
WORKSPACE_BYTES = 32 << 20

_LIB: ctypes.CDLL | None = None
_HANDLES: dict[int, _Handle] = {}
_ONE = ctypes.c_float(1.0)
_ZERO = ctypes.c_float(0.0)


def _find_library() -> ctypes.CDLL:
    """The libcublas already mapped into this process (CuPy's), else one from the path."""
    cupy.cuda.device.get_cublas_handle()  # makes CuPy load its libcublas first
    candidates = _libs.mapped("libcublas.so")
    candidates += ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
    return _libs.open_first(candidates, "cublas", "cublasGemmEx",
                            "cuBLAS library for direct GEMMs")


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        lib = _find_library()
        vp, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
        lib.cublasSetStream_v2.argtypes = [vp, vp]
        lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
        lib.cublasGemmEx.argtypes = [vp, i32, i32, i32, i32, i32, vp, vp, i32, i32, vp, i32,
                                     i32, vp, vp, i32, i32, i32, i32]
        lib.cublasGemmStridedBatchedEx.argtypes = [
            vp, i32, i32, i32, i32, i32, vp, vp, i32, i32, i64, vp, i32, i32, i64, vp, vp,
            i32, i32, i64, i32, i32, i32]
        _LIB = lib
    return _LIB


class _Handle:
    """One cuBLAS handle of one device, its workspace and the stream it is bound to."""

    def __init__(self) -> None:
        lib = _lib()
        self.ptr = ctypes.c_void_p()
        check(lib.cublasCreate_v2(ctypes.byref(self.ptr)), "cublasCreate")
        if cupy.cuda.get_current_stream().is_capturing():
            raise ExecutionError("the direct cuBLAS handle must be made before a capture "
                                 "(run once eagerly first)")
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=np.uint8)
        check(lib.cublasSetWorkspace_v2(self.ptr, self.workspace.data.ptr, WORKSPACE_BYTES),
               "cublasSetWorkspace")
        self.stream = -1

    def bind(self) -> ctypes.c_void_p:
        """The handle, bound to CuPy's current stream (a host-only call, capture-safe)."""
        stream = cupy.cuda.get_current_stream().ptr
        if stream != self.stream:
            check(_lib().cublasSetStream_v2(self.ptr, stream), "cublasSetStream")
            self.stream = stream
        return self.ptr


def _handle() -> ctypes.c_void_p:
    dev = cupy.cuda.runtime.getDevice()
    h = _HANDLES.get(dev)
    if h is None:
        # The workspace comes from whatever allocator is current; keep it out of graph pools.
        with cupy.cuda.using_allocator(cupy.get_default_memory_pool().malloc):
            h = _HANDLES[dev] = _Handle()
    return h.bind()


def is_available() -> bool:
    """True when the direct binding loads (else callers use ``cupy.matmul``)."""
    try:
        _lib()
    except ExecutionError:
        return False
    return True


def matmul2d(a: cupy.ndarray, b: cupy.ndarray, out: cupy.ndarray | None = None,
             trans_b: bool = False, out_dtype: np.dtype | None = None) -> cupy.ndarray:
    """``a @ b`` (or ``a @ b.T`` with ``trans_b``) for 2-D arrays of one dtype.

    Args:
        a: (M, K), rows contiguous (any row stride).
        b: (K, N), or (N, K) with ``trans_b``; rows contiguous, or columns (read as the
            transposed operand, see :func:`_libs.b_operand`).
        out: Optional (M, N) C-contiguous result buffer, of the result's dtype.
        trans_b: Read ``b`` as (N, K) and use its transpose.
        out_dtype: The result's dtype: None or a's dtype, or float32 for 16-bit ``a`` and
            ``b``. float32 is written straight from the float32 accumulator (Ctype
            ``CUDA_R_32F`` with 16-bit Atype/Btype under ``CUBLAS_COMPUTE_32F``, a
            combination the cuBLAS docs list for ``cublasGemmEx``), so the product is
            rounded once instead of to 16 bits first.

    Returns:
        The (M, N) product in ``out_dtype`` (a's dtype by default; float32 accumulation).

    Raises:
        ExecutionError: ``out_dtype`` is neither a's dtype nor float32, or ``out`` is not of
            the result's dtype.
    """
    b, trans_b = b_operand(b, trans_b)
    a = a if row_major(a) else cupy.ascontiguousarray(a)
    b = b if row_major(b) else cupy.ascontiguousarray(b)
    m, k = a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    t = cuda_type(a.dtype)
    t_out = t
    if out_dtype is not None and np.dtype(out_dtype) != a.dtype:
        # Only the widening cuBLAS documents: 16-bit (or float32) inputs, float32 output.
        if np.dtype(out_dtype) != np.float32:
            raise ExecutionError(f"matmul2d: {a.dtype} inputs cannot give "
                                 f"{np.dtype(out_dtype).name} output; expected {a.dtype} or "
                                 f"float32")
        t_out = cuda_type(np.float32)
        if out is None:
            out = cupy.empty((m, n), dtype=np.float32)
        elif out.dtype != np.float32:
            raise ExecutionError(f"matmul2d: out is {out.dtype}, expected float32")
    if out is None:
        out = cupy.empty((m, n), dtype=a.dtype)
    if m == 0 or n == 0:
        return out
    if k == 0:
        out.fill(0)
        return out
    check(_lib().cublasGemmEx(
        _handle(), OP_T if trans_b else OP_N, OP_N, n, m, k, ctypes.byref(_ONE),
        b.data.ptr, t, ld(b), a.data.ptr, t, ld(a), ctypes.byref(_ZERO),
        out.data.ptr, t_out, ld(out), COMPUTE_32F, _GEMM_DEFAULT), "cublasGemmEx")
    return out


def matmul_batched(a_ptr: int, a_ld: int, a_stride: int, trans_a: bool,
                   b_ptr: int, b_ld: int, b_stride: int, trans_b: bool,
                   c_ptr: int, c_ld: int, c_stride: int,
                   m: int, n: int, k: int, batch: int, dtype,
                   alpha: float = 1.0) -> None:
    """Row-major ``C[i] = alpha * op(A[i]) @ op(B[i])`` over ``batch`` equally strided items.

    Args:
        a_ptr, b_ptr, c_ptr: Device pointers of item 0.
        a_ld, b_ld, c_ld: Row strides (elements) of the row-major A, B, C as stored.
        a_stride, b_stride, c_stride: Element strides between items.
        trans_a, trans_b: A stored as (K, M) / B stored as (N, K).
        m, n, k: C is (M, N); the contraction is over K.
        batch: Number of items.
        dtype: Element dtype of all three.
        alpha: Scale of the product.
    """
    if batch == 0 or m == 0 or n == 0:
        return
    t = cuda_type(dtype)
    scale = _ONE if alpha == 1.0 else ctypes.c_float(alpha)
    # Column-major C^T (n x m) = op(B)^T (n x k) . op(A)^T (k x m).
    check(_lib().cublasGemmStridedBatchedEx(
        _handle(), OP_T if trans_b else OP_N, OP_T if trans_a else OP_N, n, m, k,
        ctypes.byref(scale), b_ptr, t, b_ld, b_stride, a_ptr, t, a_ld, a_stride,
        ctypes.byref(_ZERO), c_ptr, t, c_ld, c_stride, batch, COMPUTE_32F, _GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx")

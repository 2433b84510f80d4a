"""cuBLASLt GEMMs (ctypes) with an explicit choice among the heuristic's algorithms.

Why: for one problem (dtypes, shapes, strides, alignment) cuBLASLt knows several kernels
(tile shapes, split-K, stream-K, cluster shapes on Hopper), and which one is fastest depends
on the shape and the GPU. ``cublasGemmEx`` runs its own single pick; its
``cublasGemmAlgo_t`` hints no longer select kernels on recent GPUs. Here the
heuristic's list is exposed so the tactic-selection pass can time its first entries
(:mod:`dist_rt.runtime.cuda.tactics`, ``lt0`` .. ``lt7``).

Index semantics: ``matmul2d(a, b, index)`` runs the ``index``-th algorithm of the list that
``cublasLtMatmulAlgoGetHeuristic`` returns for this exact problem, in the library's order
(increasing estimated time; entries whose ``state`` is not success are dropped). The list is
deterministic for a given GPU, cuBLAS version and problem, so an index chosen at build time
names the same kernel in a later process. A problem with fewer than ``index + 1``
algorithms, or a call ``cublasLtMatmul`` rejects, returns None and the caller takes its
default GEMM.

The math (row-major trick, as in :mod:`.cublas`): cuBLASLt is column-major, and a row-major
(R, C) matrix with row stride ``ld`` is the column-major (C, R) matrix with the same ``ld``.
So ``Y = A @ B`` (row-major, A (M, K), B (K, N), Y (M, N)) runs as the column-major
``Y^T = B^T A^T``: cuBLASLt's A is our B (a (N, K) column-major layout, or with ``trans_b``
our (N, K) B read as (K, N) and transposed), its B is our A ((K, M)), its C and D are Y
((N, M)), so m = N, n = M, k = K (:func:`column_major`). fp16 and bf16 use
``CUBLAS_COMPUTE_32F`` with a ``CUDA_R_32F`` scale (float32 accumulation on tensor cores);
fp32 uses ``CUBLAS_COMPUTE_32F`` (no TF32). A, B and Y share one dtype. Split-K algorithms
are limited to ``CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE``, so partial sums stay in float32
instead of being rounded to fp16/bf16 between the splits.

What is cached, and capture safety: one cuBLASLt handle per device with a fixed workspace
of :data:`WORKSPACE_BYTES`, allocated once from CuPy's default pool outside any capture
(never from a graph pool); per problem key (:func:`problem_key`: device, dtype, m, n, k,
leading dimensions, ``trans_b``, pointer alignments) the matmul descriptor, the three
layouts and the heuristic's algorithms. A call during CUDA-graph capture then makes only
``cublasLtMatmul`` (which takes the stream as an argument: CuPy's current stream, so no
``setStream`` and no CuPy capture check). A problem first seen while capturing builds its
descriptors and queries the heuristic then: host-only calls, no device allocation. A call
that would have to create the handle (and allocate its workspace) during a capture declines
instead. Pointer alignment is part of the key because the heuristic assumes 256-byte aligned
operands unless told otherwise; views at an offset (a Split's parts) get their own list.
As with :mod:`.cublas`, one workspace serves every stream of a device: GEMMs that run
concurrently on two streams must not both use this module.

CuPy is optional at import time (unlike the rest of this package): without it only the pure
helpers (:func:`column_major`, :func:`problem_key`, :func:`alignment`) work, so the row-major
mapping and the cache keys are tested on CPU-only machines too.

Rejected: timing every algorithm id (``cublasLtMatmulAlgoGetIds`` + ``AlgoInit`` and the
configuration attributes) searches a far larger space, mostly of kernels the heuristic
already ranks as slow, and its ids mean nothing across cuBLAS versions.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

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

try:
    import cupy
except ImportError:  # CPU-only machine: the pure helpers below still import and work
    cupy = None

#: Most heuristic algorithms asked for per problem (the ``lt0`` .. ``lt7`` tactics).
MAX_ALGOS = 8
#: Workspace per device; cuBLAS recommends 32 MiB on Hopper.
WORKSPACE_BYTES = 32 << 20
#: Problems whose descriptors are kept; the oldest is destroyed beyond this (dynamic shapes).
MAX_PROBLEMS = 1024

_CUDA_R_32F = 0
_DESC_TRANSA, _DESC_TRANSB = 3, 4  # cublasLtMatmulDescAttributes_t (int32_t values)
_PREF_MAX_WORKSPACE_BYTES = 1      # cublasLtMatmulPreferenceAttributes_t (uint64_t value)
_PREF_REDUCTION_SCHEME_MASK = 3    # (uint32_t value)
_PREF_MIN_ALIGNMENT = {"a": 5, "b": 6, "c": 7, "d": 8}  # MIN_ALIGNMENT_{A,B,C,D}_BYTES, uint32
_REDUCTION_SCHEME_COMPUTE_TYPE = 2  # cublasLtReductionScheme_t
#: Largest alignment the heuristic distinguishes (its default assumption for every operand).
MAX_ALIGNMENT = 256


class _Algo(ctypes.Structure):
    """``cublasLtMatmulAlgo_t``: ``uint64_t data[8]`` (semi-opaque, copied by value)."""

    _fields_ = [("data", ctypes.c_uint64 * 8)]


class _HeuristicResult(ctypes.Structure):
    """``cublasLtMatmulHeuristicResult_t`` (cublasLt.h, CUDA 11 to 13): 96 bytes."""

    _fields_ = [("algo", _Algo),                    # offset 0, 64 bytes
                ("workspaceSize", ctypes.c_size_t),  # offset 64
                ("state", ctypes.c_int),             # offset 72, cublasStatus_t
                ("wavesCount", ctypes.c_float),      # offset 76
                ("reserved", ctypes.c_int * 4)]      # offset 80


@dataclass(frozen=True)
class Layout:
    """A column-major matrix as cuBLASLt's ``cublasLtMatrixLayoutCreate`` sees it."""

    rows: int
    cols: int
    ld: int


@dataclass(frozen=True)
class ColumnMajorGemm:
    """A row-major ``Y = A @ op(B)`` as the column-major GEMM cuBLASLt runs.

    Attributes:
        m, n, k: cuBLASLt's sizes: D is (m, n), the contraction is over k.
        transa, transb: ``cublasOperation_t`` of cuBLASLt's A and B.
        a: Layout of cuBLASLt's A, which is the row-major right operand B (stored).
        b: Layout of cuBLASLt's B, which is the row-major left operand A.
        c: Layout of C and D, which is the row-major output Y.
    """

    m: int
    n: int
    k: int
    transa: int
    transb: int
    a: Layout
    b: Layout
    c: Layout


def column_major(m: int, n: int, k: int, lda: int, ldb: int, ldc: int,
                 trans_b: bool = False) -> ColumnMajorGemm:
    """Map row-major ``Y (M, N) = A (M, K) @ B`` to cuBLASLt's column-major ``Y^T = B^T A^T``.

    Args:
        m, n, k: Row-major sizes: A is (M, K), Y is (M, N).
        lda, ldb, ldc: Row strides in elements of A, B (as stored) and Y.
        trans_b: B is stored as (N, K) and used transposed.

    Returns:
        The column-major problem (cuBLASLt's m = N, n = M, k = K).
    """
    # Row-major (R, C) with row stride ld == column-major (C, R) with the same ld.
    b_stored = Layout(k, n, ldb) if trans_b else Layout(n, k, ldb)
    return ColumnMajorGemm(m=n, n=m, k=k, transa=OP_T if trans_b else OP_N, transb=OP_N,
                           a=b_stored, b=Layout(k, m, lda), c=Layout(n, m, ldc))


def alignment(ptr: int) -> int:
    """Largest power of two dividing ``ptr``, capped at :data:`MAX_ALIGNMENT` bytes."""
    ptr = int(ptr)
    return MAX_ALIGNMENT if ptr % MAX_ALIGNMENT == 0 else ptr & -ptr


def problem_key(device: int, dtype: Any, m: int, n: int, k: int, lda: int, ldb: int, ldc: int,
                trans_b: bool, aligns: tuple[int, int, int]) -> tuple:
    """The cache key of one problem: everything the heuristic's answer depends on.

    Args:
        device: CUDA device id.
        dtype: Element dtype of A, B and Y.
        m, n, k, lda, ldb, ldc, trans_b: As in :func:`column_major`.
        aligns: Byte alignments (:func:`alignment`) of A, B and Y.
    """
    return (int(device), np.dtype(dtype).name, int(m), int(n), int(k), int(lda), int(ldb),
            int(ldc), bool(trans_b), tuple(int(x) for x in aligns))


# -- library -----------------------------------------------------------------------------------

_LIB: ctypes.CDLL | None = None
_HANDLES: dict[int, _Handle] = {}
_PLANS: dict[tuple, _Plan] = {}
_ONE = ctypes.c_float(1.0)
_ZERO = ctypes.c_float(0.0)


def _find_library() -> ctypes.CDLL:
    """The libcublasLt CuPy's libcublas loaded, else one next to it, else the loader's."""
    cupy.cuda.device.get_cublas_handle()  # CuPy loads libcublas, which maps libcublasLt
    candidates = _libs.mapped("libcublasLt.so")
    for path in _libs.mapped("libcublas.so"):  # libcublas.so.12 -> libcublasLt.so.12
        folder, base = os.path.split(path)
        candidates.append(os.path.join(folder, "libcublasLt.so" + base[len("libcublas.so"):]))
    candidates += ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"]
    return _libs.open_first(candidates, "cublasLt", "cublasLtMatmulAlgoGetHeuristic",
                            "cuBLASLt library")


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        if cupy is None:
            raise ExecutionError("cuBLASLt GEMMs need CuPy, which is not installed")
        lib = _find_library()
        vp, i32, u64, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int64
        out_ptr = ctypes.POINTER(vp)
        # Signatures of cublasLt.h (CUDA 11+; cublasLtMatmulDescCreate gained scaleType in 11).
        lib.cublasLtCreate.argtypes = [out_ptr]
        lib.cublasLtMatmulDescCreate.argtypes = [out_ptr, i32, i32]
        lib.cublasLtMatmulDescDestroy.argtypes = [vp]
        lib.cublasLtMatmulDescSetAttribute.argtypes = [vp, i32, vp, ctypes.c_size_t]
        lib.cublasLtMatrixLayoutCreate.argtypes = [out_ptr, i32, u64, u64, i64]
        lib.cublasLtMatrixLayoutDestroy.argtypes = [vp]
        lib.cublasLtMatmulPreferenceCreate.argtypes = [out_ptr]
        lib.cublasLtMatmulPreferenceDestroy.argtypes = [vp]
        lib.cublasLtMatmulPreferenceSetAttribute.argtypes = [vp, i32, vp, ctypes.c_size_t]
        lib.cublasLtMatmulAlgoGetHeuristic.argtypes = [
            vp, vp, vp, vp, vp, vp, vp, i32, ctypes.POINTER(_HeuristicResult),
            ctypes.POINTER(i32)]
        # handle, desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo, workspace,
        # workspace bytes, stream
        lib.cublasLtMatmul.argtypes = [vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp,
                                       ctypes.POINTER(_Algo), vp, ctypes.c_size_t, vp]
        for fn in ("cublasLtCreate", "cublasLtMatmulDescCreate", "cublasLtMatmulDescDestroy",
                   "cublasLtMatmulDescSetAttribute", "cublasLtMatrixLayoutCreate",
                   "cublasLtMatrixLayoutDestroy", "cublasLtMatmulPreferenceCreate",
                   "cublasLtMatmulPreferenceDestroy", "cublasLtMatmulPreferenceSetAttribute",
                   "cublasLtMatmulAlgoGetHeuristic", "cublasLtMatmul"):
            getattr(lib, fn).restype = i32  # cublasStatus_t
        _LIB = lib
    return _LIB


def is_available() -> bool:
    """True when CuPy is installed and the cuBLASLt binding loads."""
    try:
        _lib()
    except ExecutionError:
        return False
    return True


class _Handle:
    """One cuBLASLt handle of one device and its workspace (made outside any capture)."""

    def __init__(self) -> None:
        lib = _lib()
        if cupy.cuda.get_current_stream().is_capturing():
            raise ExecutionError("the cuBLASLt handle must be made before a capture "
                                 "(run once eagerly first)")
        self.ptr = ctypes.c_void_p()
        check(lib.cublasLtCreate(ctypes.byref(self.ptr)), "cublasLtCreate")
        # The workspace comes from the default pool, never from a graph's private pool.
        with cupy.cuda.using_allocator(cupy.get_default_memory_pool().malloc):
            self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=np.uint8)


def _handle(create: bool) -> _Handle | None:
    """This device's handle; None when it does not exist yet and ``create`` is False."""
    dev = cupy.cuda.runtime.getDevice()
    h = _HANDLES.get(dev)
    if h is None and create:
        h = _HANDLES[dev] = _Handle()
    return h


class _Plan:
    """Descriptors and heuristic algorithms of one problem (host objects only)."""

    def __init__(self, handle: _Handle, cuda_dtype: int, gemm: ColumnMajorGemm,
                 aligns: tuple[int, int, int]) -> None:
        lib = _lib()
        self.desc = ctypes.c_void_p()
        self.layouts: list[ctypes.c_void_p] = []
        self.algos: list[_Algo] = []
        try:
            check(lib.cublasLtMatmulDescCreate(ctypes.byref(self.desc), COMPUTE_32F,
                                                _CUDA_R_32F), "cublasLtMatmulDescCreate")
            for attr, op in ((_DESC_TRANSA, gemm.transa), (_DESC_TRANSB, gemm.transb)):
                value = ctypes.c_int32(op)
                check(lib.cublasLtMatmulDescSetAttribute(self.desc, attr, ctypes.byref(value),
                                                          ctypes.sizeof(value)),
                       "cublasLtMatmulDescSetAttribute")
            for lay in (gemm.a, gemm.b, gemm.c):
                ptr = ctypes.c_void_p()
                check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(ptr), cuda_dtype, lay.rows,
                                                      lay.cols, lay.ld),
                       "cublasLtMatrixLayoutCreate")
                self.layouts.append(ptr)
            self.algos = _query(handle, self.desc, self.layouts, aligns)
        except ExecutionError:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Free the descriptors (host memory; kernels already launched do not use them)."""
        lib = _lib()
        for ptr in self.layouts:
            lib.cublasLtMatrixLayoutDestroy(ptr)
        if self.desc:
            lib.cublasLtMatmulDescDestroy(self.desc)
        self.layouts, self.desc = [], ctypes.c_void_p()


def _query(handle: _Handle, desc: ctypes.c_void_p, layouts: list[ctypes.c_void_p],
           aligns: tuple[int, int, int]) -> list[_Algo]:
    """The heuristic's usable algorithms for these descriptors, in its order."""
    lib = _lib()
    pref = ctypes.c_void_p()
    check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)),
           "cublasLtMatmulPreferenceCreate")
    try:
        align_a, align_b, align_y = aligns
        # cuBLASLt's A is our B and its B is our A (the row-major trick); C and D are Y.
        values = [(_PREF_MAX_WORKSPACE_BYTES, ctypes.c_uint64(WORKSPACE_BYTES)),
                  (_PREF_REDUCTION_SCHEME_MASK, ctypes.c_uint32(_REDUCTION_SCHEME_COMPUTE_TYPE)),
                  (_PREF_MIN_ALIGNMENT["a"], ctypes.c_uint32(align_b)),
                  (_PREF_MIN_ALIGNMENT["b"], ctypes.c_uint32(align_a)),
                  (_PREF_MIN_ALIGNMENT["c"], ctypes.c_uint32(align_y)),
                  (_PREF_MIN_ALIGNMENT["d"], ctypes.c_uint32(align_y))]
        for attr, value in values:
            check(lib.cublasLtMatmulPreferenceSetAttribute(pref, attr, ctypes.byref(value),
                                                            ctypes.sizeof(value)),
                   "cublasLtMatmulPreferenceSetAttribute")
        results = (_HeuristicResult * MAX_ALGOS)()
        count = ctypes.c_int(0)
        status = lib.cublasLtMatmulAlgoGetHeuristic(
            handle.ptr, desc, layouts[0], layouts[1], layouts[2], layouts[2], pref, MAX_ALGOS,
            results, ctypes.byref(count))
    finally:
        lib.cublasLtMatmulPreferenceDestroy(pref)
    if status != 0:  # CUBLAS_STATUS_NOT_SUPPORTED: no heuristic for this configuration
        return []
    # Copy each algo out of the results array: the plan outlives it.
    return [_Algo.from_buffer_copy(r.algo) for r in results[:min(count.value, MAX_ALGOS)]
            if r.state == 0]


def _plan(handle: _Handle, dtype: Any, m: int, n: int, k: int, lda: int, ldb: int, ldc: int,
          trans_b: bool, aligns: tuple[int, int, int]) -> _Plan:
    """The cached plan of a problem, built (host calls only) on first sight."""
    key = problem_key(cupy.cuda.runtime.getDevice(), dtype, m, n, k, lda, ldb, ldc, trans_b,
                      aligns)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _Plan(handle, cuda_type(dtype), column_major(m, n, k, lda, ldb, ldc, trans_b),
                     aligns)
        if len(_PLANS) >= MAX_PROBLEMS:  # dicts keep insertion order: drop the oldest
            _PLANS.pop(next(iter(_PLANS))).destroy()
        _PLANS[key] = plan
    return plan


# -- public API --------------------------------------------------------------------------------

def algo_count(dtype: Any, m: int, n: int, k: int, trans_b: bool = False) -> int:
    """How many algorithms the heuristic gives a contiguous, freshly allocated problem.

    This is what the tactics' ``applies`` asks at build time: operands with row strides K
    (A), N or K (B with ``trans_b``) and N (Y), all 256-byte aligned like CuPy allocations.

    Args:
        dtype: float32, float16 or bfloat16 (others: 0).
        m, n, k: A is (M, K), Y is (M, N).
        trans_b: B is stored as (N, K).

    Returns:
        0 .. :data:`MAX_ALGOS` (0 for an empty problem).

    Raises:
        ExecutionError: The binding does not load (no CuPy, no libcublasLt).
    """
    if cuda_type(dtype) is None or min(m, n, k) <= 0:
        return 0
    aligned = (MAX_ALIGNMENT,) * 3
    return len(_plan(_handle(create=True), dtype, m, n, k, k, k if trans_b else n, n, trans_b,
                     aligned).algos)


def heuristics(a: Any, b: Any, trans_b: bool = False) -> int:
    """How many algorithms the heuristic gives ``a @ b`` (``a @ b.T`` with ``trans_b``).

    Uses the operands' own row strides and alignments; the output is taken as a fresh
    (M, N) allocation, as :func:`matmul2d` makes without ``out``.

    Args:
        a: (M, K) CuPy array.
        b: (K, N), or (N, K) with ``trans_b``, of a's dtype.
        trans_b: Read ``b`` as (N, K) and use its transpose.

    Returns:
        0 .. :data:`MAX_ALGOS`.

    Raises:
        ExecutionError: The binding does not load.
    """
    if a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype or cuda_type(a.dtype) is None:
        return 0
    b, trans_b = b_operand(b, trans_b)
    m, k = a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    if min(m, n, k) <= 0:
        return 0
    # matmul2d copies an operand that is not row-major: a fresh contiguous allocation.
    lda, align_a = (ld(a), alignment(a.data.ptr)) if row_major(a) else (k, MAX_ALIGNMENT)
    ldb, align_b = ((ld(b), alignment(b.data.ptr)) if row_major(b)
                    else (k if trans_b else n, MAX_ALIGNMENT))
    return len(_plan(_handle(create=True), a.dtype, m, n, k, lda, ldb, n, trans_b,
                     (align_a, align_b, MAX_ALIGNMENT)).algos)


def matmul2d(a: Any, b: Any, index: int, out: Any = None,
             trans_b: bool = False) -> Any | None:
    """Row-major ``a @ b`` with the ``index``-th heuristic algorithm of this exact problem.

    Args:
        a: (M, K) CuPy array, rows contiguous (any row stride; else copied).
        b: (K, N), or (N, K) with ``trans_b``; a's dtype.
        index: Position in the heuristic's list, 0 .. :data:`MAX_ALGOS` - 1.
        out: Optional (M, N) row-major result buffer of a's dtype.
        trans_b: Read ``b`` as (N, K) and use its transpose.

    Returns:
        The (M, N) product (float32 accumulation), or None when the dtype is not float32,
        float16 or bfloat16 (or differs between a and b), the problem is empty, the
        heuristic gives fewer than ``index + 1`` algorithms, the handle would have to be
        created during a capture, or ``cublasLtMatmul`` rejects the call. ``out`` is not
        written when None is returned.

    Raises:
        ValueError: The operands are not 2-D, their inner sizes differ, or ``out`` does not
            fit.
        ExecutionError: The binding does not load or a descriptor cannot be created.
    """
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"cublaslt.matmul2d: operands must be 2-D, got {a.shape} and {b.shape}")
    m, k = a.shape
    n, kb = b.shape if trans_b else b.shape[::-1]
    if kb != k:
        raise ValueError(f"cublaslt.matmul2d: a is {a.shape} but b is {b.shape}"
                         f"{' (used transposed)' if trans_b else ''}: inner sizes {k} != {kb}")
    t = cuda_type(a.dtype)
    if t is None or b.dtype != a.dtype or not 0 <= index < MAX_ALGOS or min(m, n, k) <= 0:
        return None
    stream = cupy.cuda.get_current_stream()
    handle = _handle(create=not stream.is_capturing())
    if handle is None:
        return None  # the workspace cannot be allocated inside a capture
    b, trans_b = b_operand(b, trans_b)
    a = a if row_major(a) else cupy.ascontiguousarray(a)
    b = b if row_major(b) else cupy.ascontiguousarray(b)
    if out is None:
        out = cupy.empty((m, n), dtype=a.dtype)
    elif out.shape != (m, n) or out.dtype != a.dtype or not row_major(out):
        raise ValueError(f"cublaslt.matmul2d: out is {out.dtype}{tuple(out.shape)} with strides "
                         f"{out.strides}, expected a row-major {a.dtype}({m}, {n})")
    aligns = (alignment(a.data.ptr), alignment(b.data.ptr), alignment(out.data.ptr))
    plan = _plan(handle, a.dtype, m, n, k, ld(a), ld(b), ld(out), trans_b, aligns)
    if index >= len(plan.algos):
        return None
    lay_a, lay_b, lay_c = plan.layouts
    status = _lib().cublasLtMatmul(
        handle.ptr, plan.desc, ctypes.byref(_ONE), b.data.ptr, lay_a, a.data.ptr, lay_b,
        ctypes.byref(_ZERO), out.data.ptr, lay_c, out.data.ptr, lay_c,
        ctypes.byref(plan.algos[index]), handle.workspace.data.ptr, WORKSPACE_BYTES,
        stream.ptr)
    return out if status == 0 else None

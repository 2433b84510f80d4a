"""Decode GEMVs: ``Y = X @ W`` for M <= 2 rows of X, with W stored transposed (N, K).

Why not cuBLAS: at decode every GEMM is a GEMV bound by reading W once, and the 1B Llama's
are small (4-23 MB): cuBLAS reaches 1.4-2.0 TB/s on those (H200), and its kernels cannot
start before the previous kernel has finished. This kernel streams W at 1.9-2.5 TB/s on
the same shapes, and is launched with programmatic dependent launch (:mod:`.launch`): its
first weight loads are issued **before** ``griddepcontrol.wait``, while the previous kernel
(a norm, RoPE, attention, the previous GEMV) is still running.

Measured in the engine (H100, 1B Llama fp16, level 2, batch 1 x 1 token, medians of three
contexts): 1.029 ms with cuBLAS GEMVs, 0.937 ms with this kernel, 0.890 ms with it and
every kernel of :mod:`.source` launched with PDL.

Layout: the CUDA backend stores every constant B of ``MatMul``/``MatMulCast`` transposed,
(N, K) row-major, and hands the layers its (K, N) column-major view
(:meth:`dist_rt.runtime.backends.Backend.constants_to_device`). cuBLAS reads that view as a
transposed operand at the same speed; here row n of W is contiguous, so:

* KS warps (1, 2 or 4: :func:`default_splits`, by K) own one output column n; its K is cut
  in 16-byte chunks (8 values) and passes of 32 lanes x ``U = 4`` chunks (2 KiB, coalesced),
  warp j of the column taking passes j, j + KS, ...; each lane keeps U chunks in flight;
* the first pass's chunks are loaded before ``PDL_WAIT`` (W does not depend on the
  previous kernel; X does), with a no-L1-allocate hint (every byte is read once);
* each W chunk is converted to float32 once and used for all M rows of X (MT = 1 or 2
  accumulators per lane); X is read from L1/L2, where it stays (M x K x 2 bytes);
* the lanes' partial sums meet by shuffles, the KS warps' in shared memory (no second
  launch), and one lane rounds once into Y (fp16/bf16, or float32 for ``MatMulCast``'s
  logits);
* optionally, the last wave of blocks asks the first bytes of the *next* GEMV's weight
  into L2 (:mod:`.l2_prefetch`) once their own loads are done, so HBM keeps working while
  the short kernels between the two GEMVs run.

Rank table (8 warps a block, block b, KS warps a column, pass p of the warp):

===========  ======================  =========================================
warp w       column n                K chunks of lane l
===========  ======================  =========================================
0 .. 7       (8 / KS) b + w / KS     32 U (KS p + w % KS) + 32 u + l, u < U = 4
===========  ======================  =========================================

Gate/up (``silu_gate``, ``dist_rt::MatMulSiluMul``): W holds 2I rows, gate then up. The
block's 8 / KS weight rows become 4 / KS pairs: warp group r takes row j + (r % 2) I of
output column j = (4 / KS) b + r / 2, and the gate group's first warp adds both groups'
partial sums (in the same order as the plain kernel), rounds g and u to the output type
and writes ``silu(g) * u``: the bits of the plain GEMV followed by ``silu_mul8``.

Rejected: ``(K, N)`` weights with split-K (the layout ONNX gives): blocks must combine
partial sums across the grid (a second launch, or a last-block reduction that serializes
the tail); measured 1.03-1.3x slower than cuBLAS at every decode shape in session 4. Two
columns a warp: faster for K = 4096 alone (H200, 3.4 vs 3.2 TB/s at 4096 x 7168) but slower
over the 7B decode chain (1.281 vs 1.219 ms), and slower for K = 2048. Tensor cores for
3-16 rows (``mma.sync.m16n8k16`` on 16 rows of X by 8 columns, 8 warps splitting K, mma's
k permuted to memory order so each lane reads 16-byte chunks): correct, but over the 1B
decode GEMVs (H100, PDL chain) 0.803 vs cuBLAS 0.825 ms at 4 rows, 0.821 vs 0.830 at 8 and
0.899 vs 0.843 at 16 (2 or 4 column tiles a warp were slower still): dropped. The
residual AddRMSNorm fused into the q/k/v and gate/up GEMVs (every block adds and normalizes
the row(s) into shared memory after ``PDL_WAIT``, bit-exact; session 7): removing the 32
norm launches outright (wrong values) would save 0.079 ms of 0.841 (H100, 1B, 1x1), but
fused, every block pays the norm's dependent latency and the kernel 57-62 registers
instead of 37-48, so 1x1 0.826 vs 0.800 ms and 2x1 1.004 vs 0.903 unfused (medians of 7
contexts); with PDL the separate norm already overlaps the GEMV's first weight loads.

Declines (returns None: cuBLAS runs) for M > :data:`MAX_ROWS`, float32, K % 8 != 0, X
rows not 16-byte aligned, or a W that is not the transposed view.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from dist_rt import dtypes
from dist_rt.runtime.cuda.device import sm_count
from dist_rt.runtime.cuda.launch import launch
from dist_rt.runtime.cuda.source import PDL_SOURCE, PRELUDE, TYPES

#: Rows of X a call takes; more run cuBLAS. H100, 1B Llama decode steps (ms, cuBLAS vs this
#: kernel, both with PDL for the small kernels): 1.070 vs 0.890 at 1 row, 1.030 vs 1.043 at
#: 2, 1.080 vs 1.317 at 4, where re-reading X from L1 for every column costs more than
#: the weights (tensor cores: cuBLAS).
MAX_ROWS = 2
_WARPS = 8

SOURCE = PRELUDE + PDL_SOURCE + r"""
#define U 4  // 16-byte chunks a lane keeps in flight

struct __align__(16) u4 { unsigned int x, y, z, w; };

__device__ __forceinline__ u4 ld_stream(const void* p) {
    u4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// 8 values of a 16-byte chunk as float32.
__device__ __forceinline__ void unpack(const u4& v, float* f, const h16*) {
    const unsigned int* u = &v.x;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        unsigned short lo = (unsigned short)(u[i] & 0xffffu), hi = (unsigned short)(u[i] >> 16);
        asm("cvt.f32.f16 %0, %1;" : "=f"(f[2 * i]) : "h"(lo));
        asm("cvt.f32.f16 %0, %1;" : "=f"(f[2 * i + 1]) : "h"(hi));
    }
}
__device__ __forceinline__ void unpack(const u4& v, float* f, const b16*) {
    const unsigned int* u = &v.x;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[2 * i] = __uint_as_float(u[i] << 16);
        f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
}

// Blocks from..grid-1 (the last wave) share the first `bytes` of `p` (a multiple of 16, p
// 16-byte aligned), asked into L2 by bulk prefetches: a hint with no completion to wait
// for, so the block exits at once and the lines arrive while the kernels after this one
// run. Earlier blocks would prefetch lines that this GEMV's later waves evict again.
#define PF_UNITS 4096  // 16-byte units (64 KiB) a prefetch instruction asks for
__device__ __forceinline__ void l2_prefetch_slice(const char* p, long long bytes, int from) {
#if __CUDA_ARCH__ >= 900
    if ((int)blockIdx.x < from) return;
    long long blocks = gridDim.x - from, units = bytes >> 4;
    long long per = (units + blocks - 1) / blocks, lo = per * (blockIdx.x - from);
    long long hi = units < lo + per ? units : lo + per;
    unsigned long long g;  // the .global address of the generic pointer
    asm("cvta.to.global.u64 %0, %1;" : "=l"(g) : "l"(p));
    for (long long u = lo; u < hi; u += PF_UNITS) {
        unsigned int size = (unsigned int)((hi - u < PF_UNITS ? hi - u : PF_UNITS) << 4);
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;"
                     :: "l"(g + (u << 4)), "r"(size) : "memory");
    }
#endif
}

// v rounded to T and back: the value a kernel reading a stored T would see.
template <typename T>
__device__ __forceinline__ float rounded(float v) { T t; st(&t, v); return ld(&t); }

// y[m * ldy + n] = sum_k x[m * ldx + k] * w[n * K + k], m < M <= MT; K % 8 == 0.
// KS warps share a column: warp j of a column takes passes j, j + KS, ... of its K chunks,
// and the KS partial sums meet in shared memory.
// GLU = 1: W has 2N rows, gate rows 0..N-1 then up rows N..2N-1 (a merged gate/up weight);
// the block's warp groups pair up (gate j, up j) and y[m, j] = silu(g) * u, with g and u
// rounded to T first, as the unfused GEMV's (M, 2N) output and silu_mul8 would compute.
template <typename T, typename TO, int MT, int KS, int GLU>
__global__ void __launch_bounds__(256)
gemv_nk(const T* __restrict__ x, long long ldx, const T* __restrict__ w, TO* __restrict__ y,
        long long ldy, int M, int K, int N, const char* __restrict__ pf, long long pf_bytes,
        int pf_from) {
    __shared__ float part[8][MT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r = warp / KS;  // the block's weight row this warp helps with
    const int n = GLU ? blockIdx.x * (4 / KS) + r / 2 : blockIdx.x * (8 / KS) + r;
    const bool live = n < N;
    const int chunks = K >> 3;
    const long long wrow = GLU ? n + (long long)(r & 1) * N : n;
    const T* row = w + (live ? wrow : 0LL) * K;
    int c0 = (warp % KS) * 32 * U;
    u4 wv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
        int c = c0 + lane + u * 32;
        wv[u] = live && c < chunks ? ld_stream(row + c * 8) : u4{0u, 0u, 0u, 0u};
    }
    PDL_WAIT();    // x is the previous kernel's output
    PDL_LAUNCH();  // the next kernel may start loading its weights
    float acc[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[m] = 0.f;
    for (bool first = true; c0 < chunks; c0 += 32 * U * KS, first = false) {
        if (!first) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                int c = c0 + lane + u * 32;
                wv[u] = live && c < chunks ? ld_stream(row + c * 8) : u4{0u, 0u, 0u, 0u};
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            int c = c0 + lane + u * 32;
            if (c >= chunks) break;
            float wf[8];
            unpack(wv[u], wf, (const T*)0);
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                if (m >= M) break;
                u4 xv = *reinterpret_cast<const u4*>(x + m * ldx + (long long)c * 8);
                float xf[8];
                unpack(xv, xf, (const T*)0);
#pragma unroll
                for (int i = 0; i < 8; ++i) acc[m] = fmaf(xf[i], wf[i], acc[m]);
            }
        }
    }
    if (pf_bytes > 0 && threadIdx.x == 0) l2_prefetch_slice(pf, pf_bytes, pf_from);
#pragma unroll
    for (int m = 0; m < MT; ++m)
        for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
    if (KS > 1 || GLU) {
        if (lane == 0)
#pragma unroll
            for (int m = 0; m < MT; ++m) part[warp][m] = acc[m];
        __syncthreads();
        if (warp % KS != 0 || (GLU && (r & 1))) return;
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            float v = 0.f;
#pragma unroll
            for (int i = 0; i < KS; ++i) v += part[warp + i][m];
            if (GLU) {
                float u = 0.f;
#pragma unroll
                for (int i = 0; i < KS; ++i) u += part[warp + KS + i][m];
                float g = rounded<T>(v);
                v = g / (1.f + __expf(-g)) * rounded<T>(u);
            }
            acc[m] = v;
        }
    }
#pragma unroll
    for (int m = 0; m < MT; ++m)
        if (lane == 0 && live && m < M) st(y + m * ldy + n, acc[m]);
}
"""

_MODULE: cupy.RawModule | None = None
_TILES = (1, 2)
_SPLITS = (1, 2, 4)


def _module() -> cupy.RawModule:
    """The compiled module (NVRTC once per process; CuPy caches the binary on disk)."""
    global _MODULE
    if _MODULE is None:
        names = [f"gemv_nk<{t}, {o}, {mt}, {ks}, {glu}>" for t in ("h16", "b16")
                 for o, glu in ((t, 0), ("float", 0), (t, 1)) for mt in _TILES
                 for ks in _SPLITS]
        _MODULE = cupy.RawModule(code=SOURCE, options=("--std=c++14",), name_expressions=names)
    return _MODULE


def default_splits(k: int) -> int:
    """Warps a column (1, 2 or 4), by the column's passes (of 32 lanes x U chunks, 4 KiB).

    H100, each shape in a chain of PDL launches, us (KS = 1 / 2 / 4): 2048 x 2048
    5.5 / 5.1 / 5.9; 5632 x 2048 11.6 / 10.4 / 11.4; 1024 x 4096 5.0 / 5.8 / 6.5; 7168 x 4096
    22.8 / 24.5 / 22.6; 4096 x 1536 7.6 / 6.7 / 6.6. Chains of a model's GEMVs (ms, KS = 1
    everywhere vs this rule): 1B 0.697 vs 0.676, 7B at 4-way TP 1.580 vs ~1.50.
    No measured shape preferred another split for its width, so N plays no part.
    """
    passes = -(-(k // 8) // (32 * 4))
    return 1 if passes <= 1 else 4 if passes >= 7 else 2


def transposed_view(b: Any) -> bool:
    """True when ``b`` (K, N) is the column-major view of a row-major (N, K) array."""
    if not isinstance(b, cupy.ndarray) or b.ndim != 2:
        return False
    k, n = b.shape  # strides of length-1 axes are arbitrary
    return ((k <= 1 or b.strides[0] == b.itemsize)
            and (n <= 1 or b.strides[1] == k * b.itemsize))


def gemv(a: Any, b: Any, out_dtype: Any = None, splits: int | None = None,
         prefetch: tuple[Any, int] | None = None, silu_gate: bool = False) -> Any | None:
    """``a @ b`` for a (M, K), M <= :data:`MAX_ROWS`, and b the (K, N) transposed view.

    Args:
        a: (M, K) CuPy array, fp16 or bf16, unit column stride.
        b: (K, N) of a's dtype, the ``.T`` of a row-major (N, K) array (see
            :func:`transposed_view`).
        out_dtype: None or a's dtype, or float32.
        splits: Warps a column (1, 2 or 4); None takes :func:`default_splits`.
        prefetch: (device array, bytes): after its own loads, each block asks its share of
            the array's first ``bytes`` (rounded down to 16) into L2 (sm_90+; a hint that
            changes no result; see :mod:`.l2_prefetch`). The last ``sm_count()`` blocks
            share it: they run in the last wave, so this GEMV's own loads do not evict it.
        silu_gate: b is a merged (K, 2I) gate/up weight; return the (M, I) ``silu(a @
            b[:, :I]) * (a @ b[:, I:])`` (``dist_rt::MatMulSiluMul``), each product rounded
            to a's dtype first. Output in a's dtype only; N must be even.

    Returns:
        The (M, N) product (float32 accumulation, one rounding), or None when this kernel
        does not take the call (see the module docstring); nothing is launched then.
    """
    if a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype or a.shape[1] != b.shape[0]:
        return None
    m, k = a.shape
    n = b.shape[1]
    out = np.dtype(a.dtype if out_dtype is None else out_dtype)
    storage = TYPES["bfloat16"] if a.dtype == dtypes.bfloat16 else TYPES.get(a.dtype.name)
    if (storage not in ("h16", "b16") or out not in (a.dtype, np.dtype(np.float32))
            or not 0 < m <= min(MAX_ROWS, _TILES[-1]) or k % 8 or n == 0
            or not transposed_view(b) or (silu_gate and (n % 2 or out != a.dtype))):
        return None
    itemsize = a.itemsize
    if (a.strides[1] != itemsize or (m > 1 and a.strides[0] % 16) or a.data.ptr % 16
            or b.data.ptr % 16):
        return None
    mt = next(t for t in _TILES if t >= m)
    out_type = "float" if out == np.float32 else storage
    ks = default_splits(k) if splits is None else splits
    glu = int(silu_gate)
    kernel = _module().get_function(f"gemv_nk<{storage}, {out_type}, {mt}, {ks}, {glu}>")
    pf, pf_bytes = prefetch if prefetch is not None else (None, 0)
    if pf is None or pf.data.ptr % 16:
        pf, pf_bytes = None, 0
    pf_bytes = min(int(pf_bytes), pf.nbytes if pf is not None else 0) // 16 * 16
    n //= 1 + glu  # output columns; a gate/up pair of weight rows makes one
    grid = -(-n // ((_WARPS // ks) >> glu))
    y = cupy.empty((m, n), dtype=out)
    launch(kernel, grid, 32 * _WARPS,
           [a, np.int64(a.strides[0] // itemsize), b, y, np.int64(n), m, k, n,
            pf, np.int64(pf_bytes), max(0, grid - sm_count())])
    return y

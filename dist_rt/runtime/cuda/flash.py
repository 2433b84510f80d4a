"""Tensor-core flash attention forward (FlashAttention-2 style) for fp16 and bf16.

``flash_attention(q, k, v, scale, causal)`` computes, for q (B, Hq, S, D) and k/v
(B, Hkv, Skv, D) with G = Hq / Hkv::

    Y[b, i, h] = sum_j softmax_j(scale * q[b, h, i] . k[b, h // G, j]) * v[b, h // G, j]

over the keys ``j < Skv`` (causal: ``j <= i + Skv - S``, the end-aligned frontier of
``dist_rt::Attention``), written as a contiguous (B, S, Hq, D) buffer; a row with no visible
key is zero. The scores never leave the chip: no (S, Skv) buffer in memory.

Design (one CTA = 4 warps = 64 query rows of one (batch, head); warp w owns rows 16w..16w+15):

* Q (64 x D) is staged once through shared memory into ``mma`` A fragments held in registers.
* Key tiles of 64: K and V tiles are copied global -> shared with ``cp.async`` (16 bytes a
  thread, zero-filled past Skv), double buffered so the next tile's copy overlaps this
  tile's math. Rows are padded by 8 elements (16 bytes), which makes every ``ldmatrix``
  phase hit 8 distinct 16-byte bank groups (row stride D/2 + 4 words, D a multiple of 16).
* S = Q K^T and O += P V with ``mma.sync.m16n8k16`` (fp32 accumulation); B fragments come
  from ``ldmatrix`` (``.trans`` for V, which is stored key-major).
* Online softmax in fp32 registers: per key tile, the row max over the 4 lanes of a quad
  (``shfl.xor`` 1, 2), rescale of the running sum and O, ``p = 2^(s * scale * log2(e) - m)``.
  The running sum stays per lane and is reduced across the quad once, at the end.
* FA2's register trick: the S accumulators of two adjacent n8 tiles, rounded to 16-bit
  pairs, are exactly the A fragment of P for the P V product; P never touches memory.
* Causal: key tiles past the CTA's last frontier are never loaded; only tiles that cross
  a warp's frontier or Skv are masked. CTAs are scheduled longest-first (the query-tile
  index runs backwards on the slowest grid axis) so the short tail tiles fill in last.

Shared memory: 4 tiles of 64 x (D + 8) 16-bit values (K and V, two buffers each; Q is
staged in the second V buffer, free until the first prefetch of V): 68 KiB at D = 128,
36 KiB at D = 64. ptxas (CUDA 13, sm_90, no spills) gives 236 registers a thread at
D = 128 and 156 at D = 64, so registers, not shared memory, cap an H100 SM at 2 CTAs
(8 warps) at D = 128 and 3 at D = 64.

Instantiated per (dtype, D) as its own small NVRTC program with an ``extern "C"`` entry, so
a process compiles only what it runs and CuPy's disk cache applies (CuPy recompiles
programs compiled with C++ name expressions every time). Requires sm_80+ (``cp.async``,
bf16 ``mma``); older GPUs get None and the caller's fallback.

Rejected for now: Hopper ``wgmma`` with TMA (FlashAttention-3) reaches ~1.5x more on H100
but needs tensor-map descriptors, warp specialization and a much larger kernel; this
``mma.sync`` kernel is the portable step first.
"""

from __future__ import annotations

import math
from typing import Any

import cupy
import numpy as np

from dist_rt import dtypes

#: Query rows per CTA (4 warps of 16 rows) and keys per tile.
BLOCK_M = 64
BLOCK_N = 64
THREADS = 128
#: Largest head dim (a multiple of 16); the register accumulators grow with D.
MAX_HEAD_DIM = 128
LOG2E = 1.4426950408889634

SOURCE = r"""
#define NEG_INF (-__int_as_float(0x7f800000))
#define BM 64
#define BN 64
#define NT 128
typedef unsigned short u16;
struct h16 { u16 x; };
struct b16 { u16 x; };

// ---- PTX wrappers (no CUDA headers: NVRTC may not find them) ----
__device__ __forceinline__ unsigned smem_u32(const void* p) {
    unsigned r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}
// 16 bytes global -> shared; bytes = 0 writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                 :: "r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
// Wait until at most N committed groups of this thread are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory");
}
// ldmatrix .x4: lane l gives the address of row (l % 8) of 8x8 matrix (l / 8); register r
// of lane l receives row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 of matrix r (.trans: of
// the transposed matrix, i.e. rows 2 (l % 4), 2 (l % 4) + 1 and column l / 4).
__device__ __forceinline__ void ldsm_x4(unsigned addr, unsigned* r) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr) : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(unsigned addr, unsigned* r) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr) : "memory");
}
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: D (16x8) = A (16x16) B (16x8) + C, per
// PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type", with
// g = lane >> 2 (groupID) and q = lane & 3 (threadID_in_group):
//   A: a[0] = (row g,     cols 2q, 2q+1)    a[1] = (row g + 8, cols 2q, 2q+1)
//      a[2] = (row g,     cols 2q+8, 2q+9)  a[3] = (row g + 8, cols 2q+8, 2q+9)
//   B: b0 = (rows k 2q, 2q+1, col n g)      b1 = (rows k 2q+8, 2q+9, col n g)
//   C: c[0], c[1] = (row g, cols 2q, 2q+1)  c[2], c[3] = (row g + 8, cols 2q, 2q+1)
// Each 32-bit register holds two 16-bit values, the lower column in the low half.
template <typename T> struct Mma;
template <> struct Mma<h16> {
    static __device__ __forceinline__ void run(float* c, const unsigned* a, unsigned b0,
                                               unsigned b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    // cvt.rn.f16x2.f32 d, a, b puts a in the upper half and b in the lower half.
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        unsigned r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};
template <> struct Mma<b16> {
    static __device__ __forceinline__ void run(float* c, const unsigned* a, unsigned b0,
                                               unsigned b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        unsigned r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};

// Rows [r0, r0 + 64) of a (rows, D) matrix with row stride `stride` (elements, a multiple
// of 8) into a shared tile of row pitch D + 8; rows >= `rows` are zero-filled.
template <int D>
__device__ __forceinline__ void load_tile(unsigned dst, const u16* src, long long stride,
                                          int r0, int rows, int tid) {
    constexpr int CH = D / 8, LD = D + 8;
#pragma unroll
    for (int i = 0; i < BN * CH / NT; ++i) {
        const int c = tid + i * NT;
        const int r = c / CH, col = (c % CH) * 8;
        const bool ok = r0 + r < rows;
        cp_async16(dst + (unsigned)(r * LD + col) * 2u,
                   src + (ok ? (long long)(r0 + r) * stride : 0ll) + col, ok ? 16 : 0);
    }
}

// q (B, Hq, S, D), k/v (B, Hkv, Skv, D): element strides of dims b, h, s given (multiples of
// 8, d contiguous, 16-byte aligned bases); y (B, S, Hq, D) contiguous.
// Grid (Hq, B, ceil(S / 64)), 128 threads, 4 * 64 * (D + 8) * 2 bytes of dynamic smem.
template <typename T, int D>
__device__ __forceinline__ void flash_body(
        const u16* __restrict__ q, const u16* __restrict__ k, const u16* __restrict__ v,
        u16* __restrict__ y, int S, int Skv, int G, int Hq,
        long long qsb, long long qsh, long long qss, long long ksb, long long ksh,
        long long kss, long long vsb, long long vsh, long long vss, float sl2, int causal) {
    constexpr int LD = D + 8;                   // padded shared row pitch (elements)
    constexpr unsigned TB = BN * LD * 2;        // bytes of one shared tile
    constexpr int KT = D / 16;                  // k16 steps of Q K^T = n16 pairs of P V
    extern __shared__ __align__(16) unsigned char smem[];
    const unsigned base = smem_u32(smem);       // K0, K1, V0, V1 (Q staged in V1)
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, tq = lane & 3;
    const int h = blockIdx.x, b = blockIdx.y;
    const int q0 = (int)(gridDim.z - 1 - blockIdx.z) * BM;  // longest causal tiles first
    const int off = Skv - S;                    // end-aligned causal: key j <= i + off
    const int q_last = min(q0 + BM, S) - 1;
    const int kv_end = causal ? min(Skv, q_last + off + 1) : Skv;
    const int n_tiles = kv_end > 0 ? (kv_end + BN - 1) / BN : 0;
    const int row0 = q0 + warp * 16 + g, row1 = row0 + 8;   // this lane's two query rows
    const int lim0 = causal ? min(Skv, row0 + off + 1) : Skv;
    const int lim1 = causal ? min(Skv, row1 + off + 1) : Skv;
    const int hk = h / G;
    const u16* qp = q + b * qsb + h * qsh;
    const u16* kp = k + b * ksb + hk * ksh;
    const u16* vp = v + b * vsb + hk * vsh;

    float o[2 * KT][4];
#pragma unroll
    for (int i = 0; i < 2 * KT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;

    if (n_tiles > 0) {  // uniform over the CTA
        const unsigned sq = base + 3 * TB;
        load_tile<D>(sq, qp, qss, q0, S, tid);
        load_tile<D>(base, kp, kss, 0, Skv, tid);
        cp_async_commit();                              // group: Q, K0
        load_tile<D>(base + 2 * TB, vp, vss, 0, Skv, tid);
        cp_async_commit();                              // group: V0
        cp_async_wait<1>();
        __syncthreads();
        unsigned qf[KT][4];
#pragma unroll
        for (int kk = 0; kk < KT; ++kk)  // A fragments: matrices (r0-7,c0-7) (r8-15,c0-7) ...
            ldsm_x4(sq + (unsigned)((warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8)
                         * 2u, qf[kk]);
        const int wq0 = q0 + warp * 16;                 // this warp's first query row
        for (int t = 0; t < n_tiles; ++t) {
            // In flight here: V[t]. K[t] has landed and is visible to all threads.
            const int j0 = t * BN;
            const bool more = t + 1 < n_tiles;
            const unsigned sk = base + (t & 1) * TB, sv = base + (2 + (t & 1)) * TB;
            if (more) {  // K buffer (t+1)&1 was last read in iteration t-1, before a barrier
                load_tile<D>(base + ((t + 1) & 1) * TB, kp, kss, j0 + BN, Skv, tid);
                cp_async_commit();
            }
            // S (16 x 64 per warp) = Q K^T; K is key-major, so plain ldmatrix gives B
            // fragments: matrices (keys 0-7, d 0-7) (keys 0-7, d 8-15) (keys 8-15, d 0-7) ...
            float s[8][4];
#pragma unroll
            for (int i = 0; i < 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KT; ++kk) {
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    unsigned r[4];
                    ldsm_x4(sk + (unsigned)((np * 16 + (lane & 7) + (lane >> 4) * 8) * LD
                                            + kk * 16 + ((lane >> 3) & 1) * 8) * 2u, r);
                    Mma<T>::run(s[2 * np], qf[kk], r[0], r[1]);
                    Mma<T>::run(s[2 * np + 1], qf[kk], r[2], r[3]);
                }
            }
            // Mask keys past Skv and past each row's causal frontier (only where some are).
            if (j0 + BN > Skv || (causal && j0 + BN - 1 > wq0 + off)) {
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    const int j = j0 + nt * 8 + 2 * tq;
                    if (j >= lim0) s[nt][0] = NEG_INF;
                    if (j + 1 >= lim0) s[nt][1] = NEG_INF;
                    if (j >= lim1) s[nt][2] = NEG_INF;
                    if (j + 1 >= lim1) s[nt][3] = NEG_INF;
                }
            }
            // Online softmax: row max over the quad, rescale the running sum and O.
            float mx0 = m0, mx1 = m1;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
                mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            // A row that has seen no key yet keeps max -inf: subtract 0 so exp2 gives 0, not NaN.
            const float c0 = mx0 == NEG_INF ? 0.f : mx0 * sl2;
            const float c1 = mx1 == NEG_INF ? 0.f : mx1 * sl2;
            const float a0 = ex2(m0 * sl2 - c0), a1 = ex2(m1 * sl2 - c1);  // 0 when m = -inf
            m0 = mx0;
            m1 = mx1;
            l0 *= a0;
            l1 *= a1;
#pragma unroll
            for (int i = 0; i < 2 * KT; ++i) {
                o[i][0] *= a0; o[i][1] *= a0; o[i][2] *= a1; o[i][3] *= a1;
            }
            // P = 2^(s sl2 - c); n8 tiles 2kk and 2kk+1 form the A fragment of k16 step kk.
            unsigned pf[4][4];
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                const float p0 = ex2(fmaf(s[nt][0], sl2, -c0)), p1 = ex2(fmaf(s[nt][1], sl2, -c0));
                const float p2 = ex2(fmaf(s[nt][2], sl2, -c1)), p3 = ex2(fmaf(s[nt][3], sl2, -c1));
                l0 += p0 + p1;
                l1 += p2 + p3;
                pf[nt >> 1][(nt & 1) * 2] = Mma<T>::pack(p0, p1);       // rows g
                pf[nt >> 1][(nt & 1) * 2 + 1] = Mma<T>::pack(p2, p3);   // rows g + 8
            }
            // V[t] must have landed (K[t+1] may stay in flight).
            if (more) cp_async_wait<1>(); else cp_async_wait<0>();
            __syncthreads();
            if (more) {  // V buffer (t+1)&1 (Q at t = 0) is free: everyone passed the barrier
                load_tile<D>(base + (2 + ((t + 1) & 1)) * TB, vp, vss, j0 + BN, Skv, tid);
                cp_async_commit();
            }
            // O += P V; V is key-major, so ldmatrix.trans gives B fragments: matrices
            // (keys 0-7, d 0-7) (keys 8-15, d 0-7) (keys 0-7, d 8-15) (keys 8-15, d 8-15).
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
                for (int dp = 0; dp < KT; ++dp) {
                    unsigned r[4];
                    ldsm_x4_t(sv + (unsigned)((kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD
                                              + dp * 16 + (lane >> 4) * 8) * 2u, r);
                    Mma<T>::run(o[2 * dp], pf[kk], r[0], r[1]);
                    Mma<T>::run(o[2 * dp + 1], pf[kk], r[2], r[3]);
                }
            }
            if (more) {  // K[t+1] landed (V[t+1] may stay in flight); all done with V[t]
                cp_async_wait<1>();
                __syncthreads();
            }
        }
    }
    // Each lane summed only its own columns: reduce the row sums over the quad.
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
    const long long rs = (long long)Hq * D;
    u16* y0 = y + ((long long)b * S + row0) * rs + (long long)h * D;
    u16* y1 = y0 + 8 * rs;
#pragma unroll
    for (int i = 0; i < 2 * KT; ++i) {
        const int d = i * 8 + 2 * tq;
        if (row0 < S)
            *reinterpret_cast<unsigned*>(y0 + d) = Mma<T>::pack(o[i][0] * i0, o[i][1] * i0);
        if (row1 < S)
            *reinterpret_cast<unsigned*>(y1 + d) = Mma<T>::pack(o[i][2] * i1, o[i][3] * i1);
    }
}
"""

#: One entry point per (storage type, head dim), appended to SOURCE.
_ENTRY = r"""
extern "C" __global__ void __launch_bounds__(NT) {name}(
        const u16* q, const u16* k, const u16* v, u16* y, int S, int Skv, int G, int Hq,
        long long qsb, long long qsh, long long qss, long long ksb, long long ksh,
        long long kss, long long vsb, long long vsh, long long vss, float sl2, int causal) {{
    flash_body<{t}, {d}>(q, k, v, y, S, Skv, G, Hq, qsb, qsh, qss, ksb, ksh, kss, vsb, vsh,
                         vss, sl2, causal);
}}
"""

#: (device id, storage type, D) -> compiled kernel with its shared-memory limit raised.
_KERNELS: dict[tuple[int, str, int], Any] = {}
_CAPABLE: dict[int, bool] = {}


def _storage(dtype: Any) -> str | None:
    dt = np.dtype(dtype)
    if dt == dtypes.bfloat16:
        return "b16"
    return "h16" if dt == np.float16 else None


def supports(dtype: Any, head_dim: int) -> bool:
    """Whether the kernel exists for this dtype and head dim (fp16/bf16, D % 16 == 0 <= 128)."""
    return _storage(dtype) is not None and head_dim % 16 == 0 and 16 <= head_dim <= MAX_HEAD_DIM


def smem_bytes(head_dim: int) -> int:
    """Dynamic shared memory of one CTA: K and V tiles, two buffers each."""
    return 4 * BLOCK_N * (head_dim + 8) * 2


def _capable() -> bool:
    """sm_80 or newer (``cp.async``, bf16 ``mma``); cached per device."""
    dev = cupy.cuda.Device()
    ok = _CAPABLE.get(dev.id)
    if ok is None:
        ok = _CAPABLE[dev.id] = int(dev.compute_capability) >= 80
    return ok


def _kernel(storage: str, head_dim: int) -> Any:
    key = (cupy.cuda.Device().id, storage, head_dim)
    kernel = _KERNELS.get(key)
    if kernel is None:
        name = f"flash_fwd_{storage}_d{head_dim}"
        code = SOURCE + _ENTRY.format(name=name, t=storage, d=head_dim)
        kernel = cupy.RawModule(code=code, options=("--std=c++14",)).get_function(name)
        kernel.max_dynamic_shared_size_bytes = smem_bytes(head_dim)
        _KERNELS[key] = kernel
    return kernel


def _elem_strides(x) -> tuple[int, ...]:
    """Element strides, 0 for dims of size 1 (never stepped, so their stride is irrelevant)."""
    return tuple(0 if n == 1 else s // x.itemsize for n, s in zip(x.shape, x.strides, strict=True))


def _aligned(x):
    """``x`` itself when ``cp.async`` can read its rows (16-byte aligned), else a copy."""
    st = _elem_strides(x)
    if st[3] not in (0, 1) or x.data.ptr % 16 or any(s % 8 for s in st[:3]):
        return cupy.ascontiguousarray(x)
    return x


def flash_attention(q, k, v, scale: float, causal: bool, out=None):
    """Attention on tensor cores; None when this kernel does not cover the call.

    Args:
        q: (B, Hq, S, D) fp16 or bf16, any strides with a contiguous last dim (views of a
            merged QKV projection are read in place when 16-byte aligned).
        k: (B, Hkv, Skv, D), same dtype; Hq a multiple of Hkv (query head h reads kv head
            h // (Hq / Hkv)).
        v: Same shape and dtype as ``k``.
        scale: Score scale (> 0; folded into the exponent as ``scale * log2(e)``).
        causal: End-aligned causal mask: query i sees keys j <= i + Skv - S.
        out: Optional contiguous (B, S, Hq, D) output buffer of q's dtype.

    Returns:
        Y as a contiguous (B, S, Hq, D) array, or None (unsupported dtype, head dim, scale,
        GPU older than sm_80, or a grid too large), in which case nothing was launched.

    Raises:
        ValueError: ``out`` has the wrong shape, dtype or layout.
    """
    storage = _storage(q.dtype)
    if (storage is None or not (q.dtype == k.dtype == v.dtype) or q.ndim != 4
            or k.ndim != 4 or v.shape != k.shape):
        return None
    b, hq, s, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    n_q = -(-s // BLOCK_M)
    if (not supports(q.dtype, d) or k.shape[0] != b or k.shape[3] != d or hkv == 0
            or hq % hkv or not scale > 0 or not math.isfinite(scale) or b > 65535
            or n_q > 65535 or not _capable()):
        return None
    if out is None:
        out = cupy.empty((b, s, hq, d), dtype=q.dtype)
    elif out.shape != (b, s, hq, d) or out.dtype != q.dtype or not out.flags.c_contiguous:
        raise ValueError(f"flash_attention: out is {out.shape} {out.dtype}, expected a "
                         f"contiguous {(b, s, hq, d)} {q.dtype} array")
    if out.size == 0:
        return out
    q, k, v = (_aligned(x) for x in (q, k, v))
    strides = [np.int64(x) for t in (q, k, v) for x in _elem_strides(t)[:3]]
    _kernel(storage, d)(
        (hq, b, n_q), (THREADS,),
        (q, k, v, out, np.int32(s), np.int32(skv), np.int32(hq // hkv), np.int32(hq),
         *strides, np.float32(scale * LOG2E), np.int32(bool(causal))),
        shared_mem=smem_bytes(d))
    return out

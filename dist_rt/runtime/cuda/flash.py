"""Tensor-core flash attention forward (FlashAttention-2 style) for fp16 and bf16.

``flash_attention(q, k, v, scale, causal)`` computes, for q (B, Hq, S, D) and k/v
(B, Hkv, Skv, D) with G = Hq / Hkv::

    Y[b, i, h] = sum_j softmax_j(scale * q[b, h, i] . k[b, h // G, j]) * v[b, h // G, j]

over the keys ``j < Skv`` (causal: ``j <= i + Skv - S``, the end-aligned frontier of
``dist_rt::Attention``), written as a contiguous (B, S, Hq, D) buffer; a row with no visible
key is zero. The scores never leave the chip: no (S, Skv) buffer in memory.

Design (one CTA = 4 warps of one (batch, head); two variants, ``rows_per_warp``):

* ``rows_per_warp=16`` (kernel template MT = 1, ``flash_fwd_h16_d128``): a CTA takes 64
  query rows, warp w rows 16w..16w+15 (one ``mma`` m16 tile). Q (64 x D) is staged once
  through shared memory (in the second V buffer, free until V's first prefetch) into A
  fragments kept in registers.
* ``rows_per_warp=32`` (MT = 2, ``flash_fwd_h16_d128_m2``): a CTA takes 128 rows, warp w
  rows 32w..32w+31 (two m16 tiles, the second 16 rows below the first). Q stays in its own
  shared region and its A fragments are re-read with ``ldmatrix`` for every key tile; each
  K and V B fragment then feeds twice the mmas (see "Why two m16 tiles" below).
* Key tiles of 64: K and V tiles are copied global -> shared with ``cp.async`` (16 bytes a
  thread, zero-filled past Skv), double buffered so the next tile's copy overlaps this
  tile's math. Rows are padded by 8 elements (16 bytes), which makes every ``ldmatrix``
  phase hit 8 distinct 16-byte bank groups (row stride D/2 + 4 words, D a multiple of 16).
  A thread walks one pointer down its rows: computing each 16-byte chunk's address from
  scratch let the compiler hoist a 64-bit offset per chunk out of the key loop, ~70
  registers at D = 128 (236 -> 167 for MT = 1).
* S = Q K^T and O += P V with ``mma.sync.m16n8k16`` (fp32 accumulation); B fragments come
  from ``ldmatrix`` (``.trans`` for V, which is stored key-major).
* Online softmax in fp32 registers, per m16 tile: per key tile, the row max over the 4 lanes
  of a quad (``shfl.xor`` 1, 2), rescale of the running sum and O,
  ``p = 2^(s * scale * log2(e) - m)``. The running sum stays per lane and is reduced across
  the quad once, at the end.
* FA2's register trick: the S accumulators of two adjacent n8 tiles, rounded to 16-bit
  pairs, are exactly the A fragment of P for the P V product; P never touches memory.
* Causal: key tiles past the CTA's last frontier are never loaded; only tiles that cross
  a warp's frontier or Skv are masked, and a warp skips the math of a tile none of its rows
  sees (with MT = 2, half the warps skip the CTA's last diagonal tile). CTAs are scheduled
  longest-first (the query-tile index runs backwards on the slowest grid axis) so the short
  tail tiles fill in last.

Why two m16 tiles a warp: with one, every ``ldmatrix.x4`` (512 bytes a warp) of a K or V
B fragment feeds 2 mmas (0.5 ``ldmatrix`` an mma). An SM's shared memory moves 128 bytes a
clock, i.e. one ``ldmatrix.x4`` every 4 clocks, while the H100's dense fp16 peak is about
one m16n8k16 an SM a clock: shared memory, not the tensor cores, sets the pace (8 warps a
CTA sharing K/V tiles change nothing per warp, and measured 10-15% slower). FlashAttention-2
on H100 (hdim 128) takes 128 rows a CTA with 4 warps, i.e. two m16 tiles a warp. Registers
decide how: at D = 128 two tiles hold O (128 fp32), S (64 at BN = 64) and, if kept, Q's A
fragments (64): over the 255 a thread may have. ptxas (CUDA 13, sm_90, D = 128):

* (a) Q re-read from shared memory, BN = 64 (FA2's choice, ``Is_Q_in_regs=false``): 254
  registers, no spills (ptxas fills what it may; forced lower with ``-maxrregcount``, it
  spills only below ~232; ptxas 12.9 also gives 254 and no spills). ``ldmatrix`` an mma:
  per k16 step of Q K^T 2 (Q) + 4 (K) for 16 mmas, per (k16, d16) step of P V 1 for 4:
  0.31 overall.
* (b) Q in registers, BN = 32: 0.25 ``ldmatrix`` an mma, but 254 registers with spills.
* (c) Q from shared memory, BN = 32: 230 registers, but 0.375 ``ldmatrix`` an mma and
  twice the per-key softmax rescales of O and the barriers.

So MT = 2 is (a). Its shared memory adds Q's 128 rows: (4 x 64 + 128) x (D + 8) x 2 bytes,
102 KiB at D = 128 (2 CTAs = 204 KiB of an H100 SM's 228) and 54 KiB at D = 64.

Registers (CUDA 13, sm_90, fp16 = bf16, no spills) and resident CTAs an H100 SM:

=====  =================  =========================
D      MT = 1 (16 rows)   MT = 2 (32 rows)
=====  =================  =========================
128    167 (3 CTAs)       254 (2 CTAs, 8 warps)
64     127 (4 CTAs)       167 (3 CTAs)
=====  =================  =========================

Shared memory of MT = 1: 4 tiles of 64 x (D + 8) 16-bit values (K and V, two buffers
each), 68 KiB at D = 128, 36 KiB at D = 64.

Instantiated per (dtype, D, MT) as its own small NVRTC program with an ``extern "C"`` entry,
so a process compiles only what it runs and CuPy's disk cache applies (CuPy recompiles
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
from dist_rt.runtime.cuda.device import capability, sm_count

#: Keys per tile and threads per CTA (4 warps).
BLOCK_N = 64
THREADS = 128
#: The two variants, by query rows a warp owns: 16 (one m16 tile, 64 rows a CTA, Q in
#: registers) or 32 (two m16 tiles, 128 rows a CTA, Q re-read from shared memory).
ROWS_PER_WARP = (16, 32)
#: Largest head dim (a multiple of 16); the register accumulators grow with D.
MAX_HEAD_DIM = 128
LOG2E = 1.4426950408889634

#: PTX wrappers, the mma.sync fragments, tile loads and the online softmax step; shared with
#: the Hopper kernel (:mod:`.flash_wgmma`), whose wgmma accumulators have the same layout.
HELPERS = r"""
#define NEG_INF (-__int_as_float(0x7f800000))
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

// Rows [r0, r0 + R) of a (rows, D) matrix with row stride `stride` (elements, a multiple
// of 8) into a shared tile of row pitch D + 8; rows >= `rows` are zero-filled. Thread tid
// copies 16-byte chunk tid % CH of rows tid / CH + i * RS (for D = 16, 32, 64, 128 the same
// chunks as "chunk tid + i * NT"), walking one pointer: computing each chunk's address from
// scratch let the compiler hoist a 64-bit offset per chunk out of the key loop (MT = 1 at
// D = 128 took 236 registers that way, 167 this way).
template <int D, int R>
__device__ __forceinline__ void load_tile(unsigned dst, const u16* src, long long stride,
                                          int r0, int rows, int tid) {
    constexpr int CH = D / 8, LD = D + 8;
    constexpr int RS = NT / CH;                 // rows one pass of the CTA covers
    const int r = tid / CH, col = (tid % CH) * 8;
    if (NT % CH != 0 && r >= RS) return;        // CH not a power of 2: NT % CH threads idle
    const u16* p = src + (long long)(r0 + r) * stride + col;
    const long long step = (long long)RS * stride;
    const int left = rows - r0 - r;             // rows of this thread's chunks left in range
    dst += (unsigned)(r * LD + col) * 2u;
#pragma unroll
    for (int i = 0; i < (R + RS - 1) / RS; ++i) {
        if (R % RS != 0 && r + i * RS >= R) break;
        const bool ok = i * RS < left;
        cp_async16(dst + (unsigned)(i * RS * LD) * 2u, ok ? p : src, ok ? 16 : 0);
        p += step;
    }
}

// -inf for the keys at or past a row's limit, in the C fragments of one m16 tile: key
// j + 8 nt (+1) of s[nt][0] ([1]) for row g (limit lim0), of s[nt][2] ([3]) for row g + 8.
template <int NB>
__device__ __forceinline__ void mask_tile(float (&s)[NB][4], int j, int lim0, int lim1) {
#pragma unroll
    for (int nt = 0; nt < NB; ++nt) {
        const int jj = j + nt * 8;
        if (jj >= lim0) s[nt][0] = NEG_INF;
        if (jj + 1 >= lim0) s[nt][1] = NEG_INF;
        if (jj >= lim1) s[nt][2] = NEG_INF;
        if (jj + 1 >= lim1) s[nt][3] = NEG_INF;
    }
}

// One key tile of the online softmax for one m16 tile (this lane's rows g and g + 8): row
// max over the quad, rescale of the running sum l and of O when the running max moves, then
// P = 2^(s sl2 - c) rounded to 16 bits. n8 tiles 2kk and 2kk+1 of S are exactly the A
// fragment of k16 step kk of P V (FA2's register trick: P never touches memory). The sum
// stays per lane until the end.
//
// LAZY (used with one m16 tile a warp): lazy rescaling, as FlashAttention-4 does. The
// running max m moves only when a tile's row max exceeds it by more than LAZY_LOG2 in the
// exponent. Softmax is exact for any subtracted value used alike in P and in the sum l, so
// a stale m only lets P grow up to 2^LAZY_LOG2 (fp32 sums, 16-bit P: same relative
// precision). After the first tiles a row's max rarely jumps that far, so most tiles skip
// the 4 x NO multiplies of O and l; the skip is decided per warp (a vote) so that it saves
// issue slots rather than diverging. Measured on H100 (fp16, causal, D = 128): MT = 1 5-6%
// faster; MT = 2 (254 registers) 1% slower, so it keeps the eager rescale.
#define LAZY_LOG2 8.f

// The running sum and O of this lane's rows g (by a0) and g + 8 (by a1) after m moved.
template <int NO>
__device__ __forceinline__ void rescale(float (&l)[2], float (&o)[NO][4], float a0, float a1) {
    l[0] *= a0;
    l[1] *= a1;
#pragma unroll
    for (int i = 0; i < NO; ++i) {
        o[i][0] *= a0; o[i][1] *= a0; o[i][2] *= a1; o[i][3] *= a1;
    }
}

template <typename T, int NB, int NO, bool LAZY>
__device__ __forceinline__ void softmax_tile(const float (&s)[NB][4], float (&m)[2],
                                             float (&l)[2], float (&o)[NO][4],
                                             unsigned (&pf)[NB / 2][4], float sl2) {
    // This tile's row maxima (eager: with the running max folded in).
    float mx0 = LAZY ? NEG_INF : m[0], mx1 = LAZY ? NEG_INF : m[1];
#pragma unroll
    for (int nt = 0; nt < NB; ++nt) {
        mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
        mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    float c0, c1;
    if (LAZY) {
        // A row that has seen no key keeps m = -inf (-inf + LAZY_LOG2 is -inf: its first
        // finite max moves it, with a = 2^-inf = 0 for the empty O and l).
        const bool up0 = mx0 * sl2 > m[0] * sl2 + LAZY_LOG2;
        const bool up1 = mx1 * sl2 > m[1] * sl2 + LAZY_LOG2;
        float a0 = 1.f, a1 = 1.f;
        if (up0) { a0 = ex2(m[0] * sl2 - mx0 * sl2); m[0] = mx0; }
        if (up1) { a1 = ex2(m[1] * sl2 - mx1 * sl2); m[1] = mx1; }
        if (__any_sync(0xffffffffu, up0 || up1)) rescale(l, o, a0, a1);
        c0 = m[0] == NEG_INF ? 0.f : m[0] * sl2;  // no visible key yet: exp2 gives 0
        c1 = m[1] == NEG_INF ? 0.f : m[1] * sl2;
    } else {
        // A row that has seen no key yet keeps max -inf: subtract 0 so exp2 gives 0, not NaN.
        c0 = mx0 == NEG_INF ? 0.f : mx0 * sl2;
        c1 = mx1 == NEG_INF ? 0.f : mx1 * sl2;
        const float a0 = ex2(m[0] * sl2 - c0), a1 = ex2(m[1] * sl2 - c1);  // 0: m = -inf
        m[0] = mx0;
        m[1] = mx1;
        rescale(l, o, a0, a1);
    }
    float l0 = l[0], l1 = l[1];
#pragma unroll
    for (int nt = 0; nt < NB; ++nt) {
        const float p0 = ex2(fmaf(s[nt][0], sl2, -c0)), p1 = ex2(fmaf(s[nt][1], sl2, -c0));
        const float p2 = ex2(fmaf(s[nt][2], sl2, -c1)), p3 = ex2(fmaf(s[nt][3], sl2, -c1));
        l0 += p0 + p1;
        l1 += p2 + p3;
        pf[nt >> 1][(nt & 1) * 2] = Mma<T>::pack(p0, p1);       // rows g
        pf[nt >> 1][(nt & 1) * 2 + 1] = Mma<T>::pack(p2, p3);   // rows g + 8
    }
    l[0] = l0;
    l[1] = l1;
}

"""

SOURCE = HELPERS + r"""
// q (B, Hq, S, D), k/v (B, Hkv, Skv, D): element strides of dims b, h, s given (multiples of
// 8, d contiguous, 16-byte aligned bases); y (B, S, Hq, D) contiguous. MT m16 tiles of
// query rows a warp: warp w owns rows 16 MT w .. 16 MT w + 16 MT - 1 of the CTA's 64 MT.
// Grid (Hq, B, ceil(S / (64 MT))), 128 threads, smem_bytes() of dynamic shared memory.
template <typename T, int D, int MT>
__device__ __forceinline__ void flash_body(
        const u16* __restrict__ q, const u16* __restrict__ k, const u16* __restrict__ v,
        u16* __restrict__ y, int S, int Skv, int G, int Hq,
        long long qsb, long long qsh, long long qss, long long ksb, long long ksh,
        long long kss, long long vsb, long long vsh, long long vss, float sl2, int causal) {
    static_assert(MT == 1 || MT == 2, "one or two m16 tiles a warp");
    constexpr int WR = 16 * MT;                 // query rows of one warp
    constexpr int BM = 4 * WR;                  // query rows of the CTA
    constexpr bool Q_IN_REGS = MT == 1;         // else re-read from shared memory every tile
    constexpr int LD = D + 8;                   // padded shared row pitch (elements)
    constexpr unsigned TB = BN * LD * 2;        // bytes of one K or V tile
    constexpr int KT = D / 16;                  // k16 steps of Q K^T = n16 pairs of P V
    constexpr int NB = BN / 8;                  // n8 tiles of S
    static_assert(!Q_IN_REGS || BM <= BN, "Q is staged in one V tile");
    extern __shared__ __align__(16) unsigned char smem[];
    // K0, K1, V0, V1, then (MT = 2) Q; MT = 1 stages Q in V1, free until V's first prefetch.
    const unsigned base = smem_u32(smem);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, tq = lane & 3;
    const int h = blockIdx.x, b = blockIdx.y;
    const int q0 = (int)(gridDim.z - 1 - blockIdx.z) * BM;  // longest causal tiles first
    const int wq0 = q0 + warp * WR;             // this warp's first query row
    const int off = Skv - S;                    // end-aligned causal: key j <= i + off
    const int q_last = min(q0 + BM, S) - 1;
    const int kv_end = causal ? min(Skv, q_last + off + 1) : Skv;
    const int n_tiles = kv_end > 0 ? (kv_end + BN - 1) / BN : 0;
    const int hk = h / G;
    const u16* qp = q + b * qsb + h * qsh;
    const u16* kp = k + b * ksb + hk * ksh;
    const u16* vp = v + b * vsb + hk * vsh;

    // Per m16 tile mt: O accumulators, running max and sum of this lane's rows g and g + 8.
    float o[MT][2 * KT][4], m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int i = 0; i < 2 * KT; ++i)
            o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
        m[mt][0] = m[mt][1] = NEG_INF;
        l[mt][0] = l[mt][1] = 0.f;
    }

    if (n_tiles > 0) {  // uniform over the CTA
        const unsigned sq = base + (Q_IN_REGS ? 3 : 4) * TB;
        load_tile<D, BM>(sq, qp, qss, q0, S, tid);
        load_tile<D, BN>(base, kp, kss, 0, Skv, tid);
        cp_async_commit();                              // group: Q, K0
        load_tile<D, BN>(base + 2 * TB, vp, vss, 0, Skv, tid);
        cp_async_commit();                              // group: V0
        cp_async_wait<1>();
        __syncthreads();
        // ldmatrix lane addresses. Q (A fragments of m16 tile 0, k16 step 0): matrices
        // (r0-7, c0-7) (r8-15, c0-7) (r0-7, c8-15) (r8-15, c8-15). K is key-major, so plain
        // ldmatrix gives B fragments: (keys 0-7, d 0-7) (keys 0-7, d 8-15) (keys 8-15, d 0-7)
        // ... V is key-major too, so ldmatrix.trans gives B fragments: (keys 0-7, d 0-7)
        // (keys 8-15, d 0-7) (keys 0-7, d 8-15) (keys 8-15, d 8-15). m16 tile mt, k16 step
        // kk, n16 pair np, ... are constant offsets from these.
        const unsigned qa = sq + (unsigned)((warp * WR + (lane & 15)) * LD + (lane >> 4) * 8) * 2u;
        const unsigned ka = (unsigned)(((lane & 7) + (lane >> 4) * 8) * LD
                                       + ((lane >> 3) & 1) * 8) * 2u;
        const unsigned va = (unsigned)(((lane & 7) + ((lane >> 3) & 1) * 8) * LD
                                       + (lane >> 4) * 8) * 2u;
        unsigned qf[Q_IN_REGS ? KT : 1][4];             // MT = 1: Q's A fragments, kept
        if (Q_IN_REGS) {
#pragma unroll
            for (int kk = 0; kk < (Q_IN_REGS ? KT : 0); ++kk)
                ldsm_x4(qa + (unsigned)(kk * 16) * 2u, qf[Q_IN_REGS ? kk : 0]);
        }
        for (int t = 0; t < n_tiles; ++t) {
            // In flight here: V[t]. K[t] has landed and is visible to all threads.
            const int j0 = t * BN;
            const bool more = t + 1 < n_tiles;
            // Whether some row of this warp is < S and sees a key of the tile (warp-uniform).
            // If none, the warp skips the math: fully masked rows would keep their state, and
            // rows >= S are never stored. It still copies tiles and meets every barrier.
            const bool live = wq0 < S && (!causal || j0 <= wq0 + WR - 1 + off);
            const unsigned sk = base + (t & 1) * TB + ka, sv = base + (2 + (t & 1)) * TB + va;
            if (more) {  // K buffer (t+1)&1 was last read in iteration t-1, before a barrier
                load_tile<D, BN>(base + ((t + 1) & 1) * TB, kp, kss, j0 + BN, Skv, tid);
                cp_async_commit();
            }
            unsigned pf[MT][BN / 16][4];                // P as A fragments, per m16 tile
            if (live) {
                // S (16 MT x 64 per warp) = Q K^T: each K B fragment feeds MT m16 tiles.
                float s[MT][NB][4];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int i = 0; i < NB; ++i)
                        s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll
                for (int kk = 0; kk < KT; ++kk) {
                    unsigned a[MT][4];
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        if (Q_IN_REGS) {
#pragma unroll
                            for (int i = 0; i < 4; ++i) a[mt][i] = qf[Q_IN_REGS ? kk : 0][i];
                        } else {  // m16 tile mt is rows +16 mt of the warp's first
                            ldsm_x4(qa + (unsigned)(mt * 16 * LD + kk * 16) * 2u, a[mt]);
                        }
                    }
#pragma unroll
                    for (int np = 0; np < BN / 16; ++np) {
                        unsigned r[4];
                        ldsm_x4(sk + (unsigned)(np * 16 * LD + kk * 16) * 2u, r);
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt) {
                            Mma<T>::run(s[mt][2 * np], a[mt], r[0], r[1]);
                            Mma<T>::run(s[mt][2 * np + 1], a[mt], r[2], r[3]);
                        }
                    }
                }
                // Mask keys past Skv and past each row's causal frontier (only where some are).
                if (j0 + BN > Skv || (causal && j0 + BN - 1 > wq0 + off)) {
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        const int r0 = wq0 + mt * 16 + g;  // this lane's rows r0, r0 + 8
                        mask_tile<NB>(s[mt], j0 + 2 * tq, causal ? min(Skv, r0 + off + 1) : Skv,
                                      causal ? min(Skv, r0 + 9 + off) : Skv);
                    }
                }
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
                    softmax_tile<T, NB, 2 * KT, MT == 1>(s[mt], m[mt], l[mt], o[mt], pf[mt],
                                                         sl2);
            }
            // V[t] must have landed (K[t+1] may stay in flight).
            if (more) cp_async_wait<1>(); else cp_async_wait<0>();
            __syncthreads();
            if (more) {  // V buffer (t+1)&1 (Q at t = 0, MT = 1) is free: all passed the barrier
                load_tile<D, BN>(base + (2 + ((t + 1) & 1)) * TB, vp, vss, j0 + BN, Skv, tid);
                cp_async_commit();
            }
            if (live) {  // O += P V: each V B fragment feeds MT m16 tiles
#pragma unroll
                for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
                    for (int dp = 0; dp < KT; ++dp) {
                        unsigned r[4];
                        ldsm_x4_t(sv + (unsigned)(kk * 16 * LD + dp * 16) * 2u, r);
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt) {
                            Mma<T>::run(o[mt][2 * dp], pf[mt][kk], r[0], r[1]);
                            Mma<T>::run(o[mt][2 * dp + 1], pf[mt][kk], r[2], r[3]);
                        }
                    }
                }
            }
            if (more) {  // K[t+1] landed (V[t+1] may stay in flight); all done with V[t]
                cp_async_wait<1>();
                __syncthreads();
            }
        }
    }
    const long long rs = (long long)Hq * D;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        // Each lane summed only its own columns: reduce the row sums over the quad.
        float l0 = l[mt][0], l1 = l[mt][1];
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
        const int row0 = wq0 + mt * 16 + g, row1 = row0 + 8;
        u16* y0 = y + ((long long)b * S + row0) * rs + (long long)h * D;
        u16* y1 = y0 + 8 * rs;
#pragma unroll
        for (int i = 0; i < 2 * KT; ++i) {
            const int d = i * 8 + 2 * tq;
            if (row0 < S)
                *reinterpret_cast<unsigned*>(y0 + d) =
                    Mma<T>::pack(o[mt][i][0] * i0, o[mt][i][1] * i0);
            if (row1 < S)
                *reinterpret_cast<unsigned*>(y1 + d) =
                    Mma<T>::pack(o[mt][i][2] * i1, o[mt][i][3] * i1);
        }
    }
}
"""

#: One entry point per (storage type, head dim, m16 tiles a warp), appended to SOURCE.
_ENTRY = r"""
extern "C" __global__ void __launch_bounds__(NT) {name}(
        const u16* q, const u16* k, const u16* v, u16* y, int S, int Skv, int G, int Hq,
        long long qsb, long long qsh, long long qss, long long ksb, long long ksh,
        long long kss, long long vsb, long long vsh, long long vss, float sl2, int causal) {{
    flash_body<{t}, {d}, {mt}>(q, k, v, y, S, Skv, G, Hq, qsb, qsh, qss, ksb, ksh, kss, vsb,
                               vsh, vss, sl2, causal);
}}
"""

#: (device id, storage type, D, m16 tiles a warp) -> compiled kernel with its shared-memory
#: limit raised.
_KERNELS: dict[tuple[int, str, int, int], Any] = {}


def _storage(dtype: Any) -> str | None:
    dt = np.dtype(dtype)
    if dt == dtypes.bfloat16:
        return "b16"
    return "h16" if dt == np.float16 else None


def supports(dtype: Any, head_dim: int) -> bool:
    """Whether the kernel exists for this dtype and head dim (fp16/bf16, D % 16 == 0 <= 128)."""
    return _storage(dtype) is not None and head_dim % 16 == 0 and 16 <= head_dim <= MAX_HEAD_DIM


def _m_tiles(rows_per_warp: int) -> int:
    """m16 tiles a warp (the kernel's MT) for ``rows_per_warp``, validated."""
    if rows_per_warp not in ROWS_PER_WARP:
        raise ValueError(f"flash_attention: rows_per_warp is {rows_per_warp!r}, expected one "
                         f"of {ROWS_PER_WARP}")
    return int(rows_per_warp) // 16


def smem_bytes(head_dim: int, rows_per_warp: int = 16) -> int:
    """Dynamic shared memory of one CTA, rows of ``head_dim + 8`` 16-bit values.

    K and V tiles of :data:`BLOCK_N` keys, two buffers each; with 32 rows a warp, also Q's
    128 rows (with 16, Q is staged in a V buffer and kept in registers).

    Raises:
        ValueError: ``rows_per_warp`` is not one of :data:`ROWS_PER_WARP`.
    """
    mt = _m_tiles(rows_per_warp)
    q_rows = 0 if mt == 1 else THREADS // 32 * 16 * mt
    return (4 * BLOCK_N + q_rows) * (head_dim + 8) * 2


def _capable() -> bool:
    """sm_80 or newer (``cp.async``, bf16 ``mma``)."""
    return capability() >= 80


def kernel_name(storage: str, head_dim: int, rows_per_warp: int = 16) -> str:
    """``flash_fwd_h16_d128`` (16 rows a warp) or ``flash_fwd_h16_d128_m2`` (32)."""
    mt = _m_tiles(rows_per_warp)
    return f"flash_fwd_{storage}_d{head_dim}" + ("" if mt == 1 else f"_m{mt}")


def kernel_source(storage: str, head_dim: int, rows_per_warp: int = 16) -> str:
    """The NVRTC program of one variant: SOURCE and its ``extern "C"`` entry."""
    name = kernel_name(storage, head_dim, rows_per_warp)
    return SOURCE + _ENTRY.format(name=name, t=storage, d=head_dim,
                                  mt=_m_tiles(rows_per_warp))


def _kernel(storage: str, head_dim: int, rows_per_warp: int) -> Any:
    key = (cupy.cuda.Device().id, storage, head_dim, rows_per_warp)
    kernel = _KERNELS.get(key)
    if kernel is None:
        code = kernel_source(storage, head_dim, rows_per_warp)
        name = kernel_name(storage, head_dim, rows_per_warp)
        kernel = cupy.RawModule(code=code, options=("--std=c++14",)).get_function(name)
        kernel.max_dynamic_shared_size_bytes = smem_bytes(head_dim, rows_per_warp)
        _KERNELS[key] = kernel
    return kernel


def default_rows_per_warp(batch: int, heads: int, queries: int, head_dim: int) -> int:
    """The variant to use when no tactic chose one: 16 rows a warp when the 32-row variant's
    CTAs (``batch x heads x ceil(queries / 128)``) would not fill the GPU once, else 32.

    With at most one wave of 32-row CTAs (2 resident an SM at D > 64, 3 at D <= 64, the
    register table above) SMs sit part-empty, and the causal tiles finish unevenly; the
    16-row variant has twice the CTAs, 3-4 resident an SM. Measured on H100 (fp16, causal,
    D = 128; ms, 32 rows / 16 rows a warp): B8 x 16 heads x 2048 (2048 CTAs) 0.500 / 0.579;
    1 x 32 x 2048 (512) 0.177 / 0.195; 1 x 16 x 2048 (256) 0.147 / 0.138; 1 x 8 x 2048
    (128) 0.127 / 0.118; 4 x 16 x 512 (256) 0.086 / 0.085; D = 64, 2 x 8 x 1000 (128)
    0.089 / 0.081. The single-GPU prefill of a 7B model (32 heads) stays on 32 rows; its
    2- and 4-way tensor-parallel slices (16 and 8 heads a rank) take 16.
    """
    ctas = batch * heads * -(-queries // (4 * ROWS_PER_WARP[1]))
    resident = 2 if head_dim > 64 else 3
    return ROWS_PER_WARP[0] if ctas <= resident * sm_count() else ROWS_PER_WARP[1]


def _elem_strides(x) -> tuple[int, ...]:
    """Element strides, 0 for dims of size 1 (never stepped, so their stride is irrelevant)."""
    return tuple(0 if n == 1 else s // x.itemsize for n, s in zip(x.shape, x.strides, strict=True))


def problem(q, k, v, scale: float) -> tuple[str, int, int, int, int, int, int] | None:
    """``(storage, B, Hq, S, D, Hkv, Skv)`` when q, k, v are an attention call the flash
    kernels can take (one 16-bit dtype, 4-D, k and v alike, Hq a multiple of Hkv > 0, a
    finite positive scale), else None. Each kernel adds its own limits (head dims, grid)."""
    storage = _storage(q.dtype)
    if (storage is None or not (q.dtype == k.dtype == v.dtype) or q.ndim != 4
            or k.ndim != 4 or v.shape != k.shape):
        return None
    b, hq, s, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    if (k.shape[0] != b or k.shape[3] != d or hkv == 0 or hq % hkv or not scale > 0
            or not math.isfinite(scale)):
        return None
    return storage, b, hq, s, d, hkv, skv


def check_out(out, shape: tuple[int, ...], dtype: Any) -> None:
    """Raise ValueError unless ``out`` is None or a contiguous ``shape`` array of ``dtype``."""
    if out is not None and (out.shape != shape or out.dtype != dtype
                            or not out.flags.c_contiguous):
        raise ValueError(f"flash_attention: out is {out.shape} {out.dtype}, expected a "
                         f"contiguous {shape} {dtype} array")


def _aligned(x):
    """``x`` itself when ``cp.async`` can read its rows (16-byte aligned), else a copy."""
    st = _elem_strides(x)
    if st[3] not in (0, 1) or x.data.ptr % 16 or any(s % 8 for s in st[:3]):
        return cupy.ascontiguousarray(x)
    return x


def flash_attention(q, k, v, scale: float, causal: bool, out=None, rows_per_warp: int = 16):
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
        rows_per_warp: The kernel variant: 16 (64 query rows a CTA) or 32 (128 rows a CTA,
            two m16 tiles a warp; fewer shared-memory reads per ``mma``).

    Returns:
        Y as a contiguous (B, S, Hq, D) array, or None (unsupported dtype, head dim, scale,
        GPU older than sm_80, or a grid too large), in which case nothing was launched.

    Raises:
        ValueError: ``rows_per_warp`` is not 16 or 32, or ``out`` has the wrong shape, dtype
            or layout.
    """
    mt = _m_tiles(rows_per_warp)  # first: a bad variant is the caller's error, not a decline
    rows_per_warp, block_m = 16 * mt, THREADS // 32 * 16 * mt
    call = problem(q, k, v, scale)
    if call is None:
        return None
    storage, b, hq, s, d, hkv, skv = call
    n_q = -(-s // block_m)
    if not supports(q.dtype, d) or b > 65535 or n_q > 65535 or not _capable():
        return None
    check_out(out, (b, s, hq, d), q.dtype)
    if out is None:
        out = cupy.empty((b, s, hq, d), dtype=q.dtype)
    if out.size == 0:
        return out
    q, k, v = (_aligned(x) for x in (q, k, v))
    strides = [np.int64(x) for t in (q, k, v) for x in _elem_strides(t)[:3]]
    _kernel(storage, d, rows_per_warp)(
        (hq, b, n_q), (THREADS,),
        (q, k, v, out, np.int32(s), np.int32(skv), np.int32(hq // hkv), np.int32(hq),
         *strides, np.float32(scale * LOG2E), np.int32(bool(causal))),
        shared_mem=smem_bytes(d, rows_per_warp))
    return out

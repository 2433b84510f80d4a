"""CUDA C++ of the Hopper flash attention kernel (:mod:`.flash_wgmma` has the design, the
measurements and the launch code).

A string only, compiled by NVRTC for sm_90a through :mod:`.cubin`: the ``Wg<T, N>``
wrappers of ``wgmma.mma_async`` (generated: 64-128 accumulator operands each), the
descriptors, barriers and copies, and ``flash_wg_body``, to which
:func:`.flash_wgmma.kernel_source` appends one ``extern "C"`` entry per variant.
"""

from __future__ import annotations


def _operands(first: int, count: int) -> str:
    return ", ".join(f"%{i}" for i in range(first, first + count))


def _wgmma(t: str, n: int) -> str:
    """``Wg<t, n>``: the m64n<n>k16 wgmma with A from shared memory (``ss``, both operands
    K-major) and from registers (``rs``, B MN-major), fp32 accumulators ``d[n / 8][4]``."""
    ptx_t = {"h16": "f16", "b16": "bf16"}[t]
    regs = n // 2
    outs = ", ".join(f'"+f"(d[{i // 4}][{i % 4}])' for i in range(regs))
    op = f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx_t}.{ptx_t}"
    ss = (f'"{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{regs + 2}, 0;\\n"\n'
          f'            "{op} {{{_operands(0, regs)}}}, %{regs}, %{regs + 1}, p, 1, 1, 0, 0;\\n}}"')
    rs = (f'"{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{regs + 5}, 0;\\n"\n'
          f'            "{op} {{{_operands(0, regs)}}}, {{{_operands(regs, 4)}}}, %{regs + 4}, '
          f'p, 1, 1, 1;\\n}}"')
    return f"""
template <> struct Wg<{t}, {n}> {{
    static __device__ __forceinline__ void ss(float (&d)[{n // 8}][4], unsigned long long da,
                                              unsigned long long db, int acc) {{
        asm volatile({ss}
            : {outs}
            : "l"(da), "l"(db), "r"(acc));
    }}
    static __device__ __forceinline__ void rs(float (&d)[{n // 8}][4], const unsigned (&a)[4],
                                              unsigned long long db, int acc) {{
        asm volatile({rs}
            : {outs}
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc));
    }}
}};
"""


KERNEL = r"""
#define WG_BM 128
#define WG_BN 128
#define WG_NT 384
// Registers a thread after setmaxnreg: an SM sub-partition holds one warp of each
// warpgroup, 3 x 168 (the launch bound's share) = 40 + 2 x 232.
#define PRODUCER_REGS 40
#define CONSUMER_REGS 232

template <typename T, int N> struct Wg;
""" + "".join(_wgmma(t, n) for t in ("h16", "b16") for n in (64, 128)) + r"""
// Shared-memory matrix descriptor, 128-byte swizzle: start address, leading byte offset
// (used by MN-major operands: the distance between 64-column panels), stride byte offset
// 1024 (8 rows of 128 bytes), all in 16-byte units.
__device__ __forceinline__ unsigned long long wg_desc(unsigned addr, unsigned lbo) {
    return (unsigned long long)((addr & 0x3FFFFu) >> 4)
         | ((unsigned long long)((lbo & 0x3FFFFu) >> 4) << 16)
         | ((unsigned long long)(1024u >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ void wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wg_wait0() {
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
}
// Generic-proxy writes (cp.async) made visible to the async proxy (wgmma's operand reads).
__device__ __forceinline__ void fence_async_smem() {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
// Keeps the compiler from moving reads of wgmma accumulators above the wait that lands them.
template <int N>
__device__ __forceinline__ void reg_fence(float (&a)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; ++i)
        asm volatile("" : "+f"(a[i][0]), "+f"(a[i][1]), "+f"(a[i][2]), "+f"(a[i][3]) :: "memory");
}

// mbarriers (CTA scope). The producer's copies complete a "full" barrier through
// cp.async.mbarrier.arrive.noinc (each of its 32 lanes counts once, when its earlier copies
// have landed); consumers wait on its phase parity and then arrive on the stage's "empty"
// barrier (lane 0 of each of the 8 consumer warps) once their products have read it.
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_arrive_cp_async(unsigned bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" :: "r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
    unsigned done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}" : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    } while (!done);
}
// TMA: this thread asks the async proxy for `bytes` more on `bar` (and arrives once), then
// copies one box of a 4-D tensor map (in global memory) into shared memory; the box lands
// 128-byte swizzled, as the map says, and its bytes complete the barrier's transaction.
__device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                 :: "r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void tma_load_4d(unsigned dst, unsigned long long map, int c0,
                                            int c1, int c2, int c3, unsigned bar) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5}], [%6];"
                 :: "r"(dst), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
}
// Rows [r0, r0 + R) of head `hh`, batch `bb` through the tensor map: one box of R rows x 64
// columns per 64-column panel (rows past the tensor's end arrive as zeros).
template <int D, int R>
__device__ __forceinline__ void tma_tile(unsigned dst, unsigned long long map, int r0, int hh,
                                         int bb, unsigned bar) {
    mbar_expect_tx(bar, R * D * 2);
#pragma unroll
    for (int p = 0; p < D / 64; ++p) tma_load_4d(dst + p * R * 128, map, p * 64, r0, hh, bb, bar);
}

// Named barriers 1 and 2 order the two consumer warpgroups' products (ping-pong).
__device__ __forceinline__ void named_sync(int id) {
    asm volatile("bar.sync %0, 256;" :: "r"(id) : "memory");
}
__device__ __forceinline__ void named_arrive(int id) {
    asm volatile("bar.arrive %0, 256;" :: "r"(id) : "memory");
}

// Rows [r0, r0 + R) of a (rows, D) matrix with row stride `stride` into R-row, 64-column
// panels at dst (1024-aligned), swizzled: chunk c of row r at panel c / 8, byte
// r * 128 + ((c % 8) ^ (r % 8)) * 16, copied by the producer warpgroup's 128 threads.
// Rows >= `rows` are zero-filled. A pass covers 128 / (D / 8) rows (8 or 16), so thread p
// keeps its chunk column and its row mod 8, i.e. its swizzle.
template <int D, int R>
__device__ __forceinline__ void load_sw(unsigned dst, const u16* src, long long stride,
                                        int r0, int rows, int p128) {
    constexpr int CH = D / 8, RS = 128 / CH;
    static_assert(RS % 8 == 0 && R % RS == 0, "whole passes of 8-row groups");
    const int r = p128 / CH, c = p128 % CH;
    const u16* p = src + (long long)(r0 + r) * stride + c * 8;
    const long long step = (long long)RS * stride;
    const int left = rows - r0 - r;
    dst += (unsigned)((c >> 3) * R * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
#pragma unroll
    for (int i = 0; i < R / RS; ++i) {
        const bool ok = i * RS < left;
        cp_async16(dst + (unsigned)(i * RS * 128), ok ? p : src, ok ? 16 : 0);
        p += step;
    }
}

// q (B, Hq, S, D), k/v (B, Hkv, Skv, D) with element strides of dims b, h, s (multiples of
// 8, d contiguous, 16-byte aligned); y (B, S, Hq, D) contiguous. Grid (Hq, B,
// ceil(S / 128)), 288 threads (consumer warpgroups 0 and 1, producer warp 8),
// smem_bytes(D) of dynamic shared memory.
template <typename T, int D, int ST, bool LAZY, bool PINGPONG, bool TMA>
__device__ __forceinline__ void flash_wg_body(
        const u16* __restrict__ q, const u16* __restrict__ k, const u16* __restrict__ v,
        u16* __restrict__ y, int S, int Skv, int G, int Hq,
        long long qsb, long long qsh, long long qss, long long ksb, long long ksh,
        long long kss, long long vsb, long long vsh, long long vss, float sl2, int causal,
        unsigned long long maps) {
    static_assert(D == 64 || D == 128, "64-column panels");
    constexpr int KT = D / 16;                     // k16 steps of Q K^T
    constexpr int NB = WG_BN / 8;                  // n8 tiles of S
    constexpr int NO = D / 8;                      // n8 tiles of O
    constexpr unsigned QB = WG_BM * D * 2, TB = WG_BN * D * 2;
    extern __shared__ unsigned char smem[];
    // full_q, full_k[ST], full_v[ST], empty_k[ST], empty_v[ST]
    __shared__ __align__(8) unsigned long long bars[1 + 4 * ST];
    // Q, K[ST], V[ST] (1024-aligned: the swizzle pattern repeats every 1024 bytes).
    const unsigned sq = (smem_u32(smem) + 1023u) & ~1023u;
    const unsigned sk0 = sq + QB, sv0 = sq + QB + ST * TB;
    const unsigned full_q = smem_u32(bars), full_k = full_q + 8, full_v = full_k + 8 * ST,
                   empty_k = full_v + 8 * ST, empty_v = empty_k + 8 * ST;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
    // CTA order (a 1-D grid): the G query heads x n_q query tiles that read one (batch, kv
    // head)'s K and V run together, so the CTAs resident at a time share those tiles in L2;
    // within such a group the longest causal tiles run first.
    const int n_q = (S + WG_BM - 1) / WG_BM, n = blockIdx.x;
    const int per = G * n_q, grp = n / per, idx = n - grp * per, hkv = Hq / G;
    const int b = grp / hkv, h = (grp - b * hkv) * G + idx % G;
    const int q0 = (n_q - 1 - idx / G) * WG_BM;
    const int off = Skv - S;                       // end-aligned causal: key j <= i + off
    const int q_last = min(q0 + WG_BM, S) - 1;
    const int kv_end = causal ? min(Skv, q_last + off + 1) : Skv;
    const int n_tiles = kv_end > 0 ? (kv_end + WG_BN - 1) / WG_BN : 0;
    if (tid == 0) {
        const unsigned producers = TMA ? 1 : 128;  // arrivals that complete a full barrier
        mbar_init(full_q, producers);
#pragma unroll
        for (int i = 0; i < ST; ++i) {
            mbar_init(full_k + 8 * i, producers);
            mbar_init(full_v + 8 * i, producers);
            mbar_init(empty_k + 8 * i, 8);
            mbar_init(empty_v + 8 * i, 8);
        }
    }
    __syncthreads();

    if (wg == 2) {  // the producer warpgroup: Q once, then K[t], V[t] into stage t % ST
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" :: "n"(PRODUCER_REGS));
        if (TMA && n_tiles > 0 && tid == 256) {  // maps: Q, K, V, 128 bytes each
            const int hk = h / G;
            tma_tile<D, WG_BM>(sq, maps, q0, h, b, full_q);
            for (int t = 0; t < n_tiles; ++t) {
                const int st = t % ST;
                const unsigned parity = (t / ST + 1) & 1;  // use t / ST - 1 of the stage
                if (t >= ST) mbar_wait(empty_k + 8 * st, parity);
                tma_tile<D, WG_BN>(sk0 + st * TB, maps + 128, t * WG_BN, hk, b, full_k + 8 * st);
                if (t >= ST) mbar_wait(empty_v + 8 * st, parity);
                tma_tile<D, WG_BN>(sv0 + st * TB, maps + 256, t * WG_BN, hk, b, full_v + 8 * st);
            }
        }
        if (!TMA && n_tiles > 0) {
            const int p128 = tid - 256;
            const int hk = h / G;
            const u16* kp = k + b * ksb + hk * ksh;
            const u16* vp = v + b * vsb + hk * vsh;
            load_sw<D, WG_BM>(sq, q + b * qsb + h * qsh, qss, q0, S, p128);
            mbar_arrive_cp_async(full_q);
            for (int t = 0; t < n_tiles; ++t) {
                const int st = t % ST;
                const unsigned parity = (t / ST + 1) & 1;  // use t / ST - 1 of the stage
                if (t >= ST) mbar_wait(empty_k + 8 * st, parity);
                load_sw<D, WG_BN>(sk0 + st * TB, kp, kss, t * WG_BN, Skv, p128);
                mbar_arrive_cp_async(full_k + 8 * st);
                if (t >= ST) mbar_wait(empty_v + 8 * st, parity);
                load_sw<D, WG_BN>(sv0 + st * TB, vp, vss, t * WG_BN, Skv, p128);
                mbar_arrive_cp_async(full_v + 8 * st);
            }
            cp_async_wait<0>();
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" :: "n"(CONSUMER_REGS));
    const int g = lane >> 2, tq = lane & 3;
    const int gq0 = q0 + wg * 64;                  // this warpgroup's first query row
    const int wq0 = gq0 + (warp & 3) * 16;         // this warp's first query row
    float o[NO][4], m[2], l[2];
#pragma unroll
    for (int i = 0; i < NO; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    m[0] = m[1] = NEG_INF;
    l[0] = l[1] = 0.f;

    if (n_tiles > 0) {  // uniform over the CTA
        const unsigned qa = sq + (unsigned)(wg * 64 * 128);  // this warpgroup's Q rows
        mbar_wait(full_q, 0);
        // Ping-pong: warpgroup 0 takes the first turn; each then passes it on after issuing
        // its S product, so one's softmax runs under the other's products.
        if (PINGPONG && wg == 1) named_arrive(1);
        bool pv_pending = false;  // a P V product whose V stage is still to be released
        for (int t = 0; t < n_tiles; ++t) {
            const int j0 = t * WG_BN, st = t % ST;
            const unsigned parity = (t / ST) & 1;
            // Whether some row of this warpgroup is < S and sees a key of the tile (uniform
            // over the warpgroup, as wgmma needs).
            const bool live = gq0 < S && (!causal || j0 <= gq0 + 63 + off);
            const unsigned sk = sk0 + st * TB, sv = sv0 + st * TB;
            unsigned pf[NB / 2][4];
            mbar_wait(full_k + 8 * st, parity);
            if (!TMA) fence_async_smem();  // cp.async wrote through the generic proxy
            if (PINGPONG) named_sync(1 + wg);
            float s[NB][4];
            if (live) {
                wg_fence();
#pragma unroll
                for (int kk = 0; kk < KT; ++kk) {
                    const unsigned col = (unsigned)((kk & 3) * 32);
                    Wg<T, WG_BN>::ss(s, wg_desc(qa + (kk >> 2) * (WG_BM * 128) + col, 16),
                                     wg_desc(sk + (kk >> 2) * (WG_BN * 128) + col, 16), kk);
                }
                wg_commit();
            }
            if (PINGPONG && (wg == 0 || t + 1 < n_tiles)) named_arrive(2 - wg);
            wg_wait0();                                // S, and the previous tile's O
            if (lane == 0) {                           // K[t] and V[t-1] read: release them
                mbar_arrive(empty_k + 8 * st);
                if (pv_pending) mbar_arrive(empty_v + 8 * ((t + ST - 1) % ST));
            }
            if (live) {
                reg_fence(s);
                reg_fence(o);
                if (j0 + WG_BN > Skv || (causal && j0 + WG_BN - 1 > wq0 + off)) {
                    const int r0 = wq0 + g;            // this lane's rows r0, r0 + 8
                    mask_tile<NB>(s, j0 + 2 * tq, causal ? min(Skv, r0 + off + 1) : Skv,
                                  causal ? min(Skv, r0 + 9 + off) : Skv);
                }
                softmax_tile<T, NB, NO, LAZY>(s, m, l, o, pf, sl2);
            }
            mbar_wait(full_v + 8 * st, parity);
            if (!TMA) fence_async_smem();  // cp.async wrote through the generic proxy
            if (live) {
                wg_fence();
#pragma unroll
                for (int kk = 0; kk < NB / 2; ++kk)
                    Wg<T, D>::rs(o, pf[kk], wg_desc(sv + (unsigned)(kk * 16 * 128),
                                                     WG_BN * 128), 1);
                wg_commit();
            }
            pv_pending = true;
        }
        wg_wait0();
        reg_fence(o);
    }
    const long long rs = (long long)Hq * D;
    float l0 = l[0], l1 = l[1];
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
    const int row0 = wq0 + g, row1 = row0 + 8;
    u16* y0 = y + ((long long)b * S + row0) * rs + (long long)h * D;
    u16* y1 = y0 + 8 * rs;
#pragma unroll
    for (int i = 0; i < NO; ++i) {
        const int d = i * 8 + 2 * tq;
        if (row0 < S)
            *reinterpret_cast<unsigned*>(y0 + d) = Mma<T>::pack(o[i][0] * i0, o[i][1] * i0);
        if (row1 < S)
            *reinterpret_cast<unsigned*>(y1 + d) = Mma<T>::pack(o[i][2] * i1, o[i][3] * i1);
    }
}
"""

"""CUDA C source of the fused kernels, compiled once per process with NVRTC.

Every kernel starts with ``PDL_WAIT(); PDL_LAUNCH();`` and is launched with programmatic
dependent launch (:mod:`.launch`): it may be scheduled while the previous kernel finishes,
and lets the next one (a GEMV streaming its weights) start as early.

16-bit types are handled without ``cuda_fp16.h``/``cuda_bf16.h`` (whose availability to
NVRTC depends on how CUDA was installed): ``h16``/``b16`` wrap the raw 16 bits and convert
with one PTX ``cvt`` (fp16) or a shift plus round-to-nearest-even (bf16). Every kernel loads
its inputs into float32, computes and accumulates in float32, and rounds once on store.

Kernels (each templated on the storage type T in {float, h16, b16}):

* ``rmsnorm<T>``: one block per row; ``y = x * rsqrt(mean(x^2) + eps) * w``.
* ``add_rmsnorm<T>``: ``s = a + b`` (stored, rounded to T) and ``y = rmsnorm(s) * w`` in one
  launch; ``add_rmsnorm_vec<T>`` the same with 16-byte vectors and the row in registers.
* ``softmax<T>``: one block per row, in place allowed; optional scale and end-aligned
  causal frontier (row ``r`` of a (G*S)-row group is query ``r % S``; key ``j`` is kept iff
  ``j <= r % S + offset``); rows with no key give zeros.
* ``silu<T>`` / ``silu_mul<T>``: elementwise ``a * sigmoid(a) (* b)``; ``silu_mul8<T>``
  the same on 16-byte vectors of row-strided (rows, cols) operands.
* ``rope_half<T>``: ``x * cos + rotate_half(x) * sin`` for a strided (B, H, S, D) x and
  (S, D) tables, written contiguous; ``rope_half_vec<T>`` the same on 16-byte vectors (a
  thread handles matching vectors of both halves); ``rope_half_pair_vec<T>`` two
  ``rope_half_vec`` launches (q and k, one cos/sin, own head counts and strides) in one grid.
* ``attention_decode<T>``: flash-style attention for short queries: a block holds one kv
  head and ``NW`` (query, group-head) items, one warp each; 32-key tiles of K and V are
  staged in shared memory as float32, each lane scores one key, and the warp keeps the
  online-softmax running max / sum and a D-wide accumulator (D <= 128, D/32 per lane;
  36.5 KiB of static shared memory).
"""

from __future__ import annotations

#: 16-bit storage types and their float32 loads/stores, shared by every NVRTC kernel module
#: of this package (``w8.py`` too): they compile without cuda_fp16.h / cuda_bf16.h.
PRELUDE = r"""
struct h16 { unsigned short x; };
struct b16 { unsigned short x; };

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const h16* p) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p->x)); return f;
}
__device__ __forceinline__ float ld(const b16* p) {
    return __int_as_float(((unsigned int)p->x) << 16);
}
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(h16* p, float v) {
    unsigned short u; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(u) : "f"(v)); p->x = u;
}
__device__ __forceinline__ void st(b16* p, float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) { p->x = 0x7fc0; return; }
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    p->x = (unsigned short)(u >> 16);
}

"""

#: Programmatic dependent launch (see :mod:`.launch`): ``PDL_WAIT()`` blocks until the
#: previous kernel of the stream has completed and its writes are visible; ``PDL_LAUNCH()``
#: lets the next kernel start launching. No-ops below sm_90 and in kernels launched without
#: the PDL attribute.
PDL_SOURCE = r"""
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#define PDL_LAUNCH() asm volatile("griddepcontrol.launch_dependents;")
#else
#define PDL_WAIT() do {} while (0)
#define PDL_LAUNCH() do {} while (0)
#endif
"""

SOURCE = PRELUDE + PDL_SOURCE + r"""
#define NEG_INF (-__int_as_float(0x7f800000))

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Block-wide reduction (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
template <bool MAX>
__device__ float block_reduce(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < nw ? scratch[lane] : (MAX ? NEG_INF : 0.f);
    r = MAX ? warp_max(r) : warp_sum(r);
    return r;
}

template <typename T>
__global__ void rmsnorm(const T* x, const T* w, T* y, int cols, float eps) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    __shared__ float scratch[32];
    const T* xr = x + (long long)blockIdx.x * cols;
    T* yr = y + (long long)blockIdx.x * cols;
    float ss = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) { float v = ld(xr + c); ss += v * v; }
    float inv = rsqrtf(block_reduce<false>(ss, scratch) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        st(yr + c, ld(xr + c) * inv * ld(w + c));
}

// s = a + b (rounded to T, as the unfused Add stores it), y = rmsnorm(s) * w: one pass over
// a and b, one block per row.
template <typename T>
__global__ void add_rmsnorm(const T* a, const T* b, const T* w, T* s, T* y, int cols,
                            float eps) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    __shared__ float scratch[32];
    long long off = (long long)blockIdx.x * cols;
    float ss = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        st(s + off + c, ld(a + off + c) + ld(b + off + c));
        float v = ld(s + off + c);  // this thread's own store: the rounded sum
        ss += v * v;
    }
    float inv = rsqrtf(block_reduce<false>(ss, scratch) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        st(y + off + c, ld(s + off + c) * inv * ld(w + c));
}

// add_rmsnorm on 16-byte vectors: one thread per VEC = 16 / sizeof(T) columns, the whole
// row in registers (cols % VEC == 0, cols / VEC <= blockDim.x <= 1024, rows 16-byte
// aligned), so a, b, w are read once and s, y written once.
template <typename T>
__global__ void add_rmsnorm_vec(const T* a, const T* b, const T* w, T* s, T* y, int cols,
                                float eps) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    constexpr int VEC = 16 / sizeof(T);
    __shared__ float scratch[32];
    long long off = (long long)blockIdx.x * cols;
    int c = threadIdx.x * VEC;
    bool on = c < cols;
    float v[VEC];
    float ss = 0.f;
    if (on) {
        uint4 va = *reinterpret_cast<const uint4*>(a + off + c);
        uint4 vb = *reinterpret_cast<const uint4*>(b + off + c);
        uint4 vs;
        const T* pa = reinterpret_cast<const T*>(&va);
        const T* pb = reinterpret_cast<const T*>(&vb);
        T* ps = reinterpret_cast<T*>(&vs);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            st(ps + j, ld(pa + j) + ld(pb + j));
            v[j] = ld(ps + j);  // the rounded sum, as the unfused Add stores it
            ss += v[j] * v[j];
        }
        *reinterpret_cast<uint4*>(s + off + c) = vs;
    }
    float inv = rsqrtf(block_reduce<false>(ss, scratch) / cols + eps);
    if (on) {
        uint4 vw = *reinterpret_cast<const uint4*>(w + c);
        uint4 vy;
        const T* pw = reinterpret_cast<const T*>(&vw);
        T* py = reinterpret_cast<T*>(&vy);
#pragma unroll
        for (int j = 0; j < VEC; ++j) st(py + j, v[j] * inv * ld(pw + j));
        *reinterpret_cast<uint4*>(y + off + c) = vy;
    }
}

template <typename T>
__global__ void softmax(const T* x, T* y, int cols, float scale, int causal, int s_q,
                        int offset) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    __shared__ float scratch[32];
    long long row = blockIdx.x;
    const T* xr = x + row * cols;
    T* yr = y + row * cols;
    int limit = causal ? min(cols, (int)(row % s_q) + offset + 1) : cols;
    float m = NEG_INF;
    for (int c = threadIdx.x; c < limit; c += blockDim.x) m = fmaxf(m, ld(xr + c) * scale);
    m = block_reduce<true>(m, scratch);
    float s = 0.f;
    for (int c = threadIdx.x; c < limit; c += blockDim.x) s += __expf(ld(xr + c) * scale - m);
    s = block_reduce<false>(s, scratch);
    float inv = (s > 0.f && m != NEG_INF) ? 1.f / s : 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        st(yr + c, c < limit ? __expf(ld(xr + c) * scale - m) * inv : 0.f);
}

template <typename T>
__global__ void silu(const T* a, T* y, long long n) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = ld(a + i);
        st(y + i, v / (1.f + __expf(-v)));
    }
}

template <typename T>
__global__ void silu_mul(const T* a, const T* b, T* y, long long n) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = ld(a + i);
        st(y + i, v / (1.f + __expf(-v)) * ld(b + i));
    }
}

// silu_mul over 16-byte vectors of (rows, cols) operands with row strides lda/ldb (in
// vectors; a merged gate/up GEMM's halves are such views); y is contiguous. All 16-byte
// aligned, cols a multiple of the vector.
template <typename T>
__global__ void silu_mul8(const T* a, const T* b, T* y, long long cols8, long long lda8,
                          long long ldb8, long long n8) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8;
         i += (long long)gridDim.x * blockDim.x) {
        long long r = i / cols8, c = i - r * cols8;
        uint4 va = reinterpret_cast<const uint4*>(a)[r * lda8 + c];
        uint4 vb = reinterpret_cast<const uint4*>(b)[r * ldb8 + c];
        uint4 vy;
        const T* pa = reinterpret_cast<const T*>(&va);
        const T* pb = reinterpret_cast<const T*>(&vb);
        T* py = reinterpret_cast<T*>(&vy);
#pragma unroll
        for (int j = 0; j < 16 / (int)sizeof(T); ++j) {
            float v = ld(pa + j);
            st(py + j, v / (1.f + __expf(-v)) * ld(pb + j));
        }
        reinterpret_cast<uint4*>(y)[i] = vy;
    }
}

// y = x * cos + rotate_half(x) * sin; x (B, H, S, D) with element strides (xb, xh, xs) and
// contiguous d; cos/sin (S, D) contiguous; y (B, H, S, D) contiguous.
template <typename T>
__global__ void rope_half(const T* x, const T* c, const T* sn, T* y, int H, int S, int D,
                          long long xb, long long xh, long long xs, long long n) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    int half = D >> 1;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x) {
        int d = (int)(e % D);
        long long r = e / D;
        int si = (int)(r % S);
        long long r2 = r / S;
        int h = (int)(r2 % H);
        long long b = r2 / H;
        const T* xr = x + b * xb + h * xh + si * xs;
        float rot = d < half ? -ld(xr + d + half) : ld(xr + d - half);
        long long t = (long long)si * D + d;
        st(y + e, ld(xr + d) * ld(c + t) + rot * ld(sn + t));
    }
}

// One item of rope_half on 16-byte vectors: item i covers VEC columns d0 of the first half
// and the same columns d0 + D/2 of the second half of one (b, h, s) row. (D/2) % VEC == 0,
// x strides and every pointer 16-byte aligned; cos/sin (S, D) and y (B, H, S, D) contiguous.
// half = D/2 and per_row = half/VEC come from the caller, computed once outside its loop.
template <typename T>
__device__ __forceinline__ void rope_vec_item(const T* x, const T* c, const T* sn, T* y,
                                              int H, int S, int D, int half, int per_row,
                                              long long xb, long long xh, long long xs,
                                              long long i) {
    constexpr int VEC = 16 / sizeof(T);
    int d0 = (int)(i % per_row) * VEC;
    long long r = i / per_row;
    int si = (int)(r % S);
    long long r2 = r / S;
    int h = (int)(r2 % H);
    long long b = r2 / H;
    const T* xr = x + b * xb + h * xh + si * xs;
    const T* cr = c + (long long)si * D;
    const T* sr = sn + (long long)si * D;
    T* yr = y + r * D;
    uint4 x1 = *reinterpret_cast<const uint4*>(xr + d0);
    uint4 x2 = *reinterpret_cast<const uint4*>(xr + d0 + half);
    uint4 c1 = *reinterpret_cast<const uint4*>(cr + d0);
    uint4 c2 = *reinterpret_cast<const uint4*>(cr + d0 + half);
    uint4 s1 = *reinterpret_cast<const uint4*>(sr + d0);
    uint4 s2 = *reinterpret_cast<const uint4*>(sr + d0 + half);
    uint4 y1, y2;
    const T *px1 = reinterpret_cast<const T*>(&x1), *px2 = reinterpret_cast<const T*>(&x2);
    const T *pc1 = reinterpret_cast<const T*>(&c1), *pc2 = reinterpret_cast<const T*>(&c2);
    const T *ps1 = reinterpret_cast<const T*>(&s1), *ps2 = reinterpret_cast<const T*>(&s2);
    T *py1 = reinterpret_cast<T*>(&y1), *py2 = reinterpret_cast<T*>(&y2);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
        float a = ld(px1 + j), bq = ld(px2 + j);
        st(py1 + j, a * ld(pc1 + j) - bq * ld(ps1 + j));
        st(py2 + j, bq * ld(pc2 + j) + a * ld(ps2 + j));
    }
    *reinterpret_cast<uint4*>(yr + d0) = y1;
    *reinterpret_cast<uint4*>(yr + d0 + half) = y2;
}

// rope_half on 16-byte vectors, one rope_vec_item per thread item.
template <typename T>
__global__ void rope_half_vec(const T* x, const T* c, const T* sn, T* y, int H, int S, int D,
                              long long xb, long long xh, long long xs, long long items) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    int half = D >> 1, per_row = half / (16 / (int)sizeof(T));
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < items;
         i += (long long)gridDim.x * blockDim.x)
        rope_vec_item(x, c, sn, y, H, S, D, half, per_row, xb, xh, xs, i);
}

// Two rope_half_vec launches in one grid, for q (B, Hq, S, D) and k (B', Hk, S, D) rotated
// by the same cos/sin: items [0, items_q) rotate q, [items_q, items) rotate k, each with its
// own head count and strides. One launch instead of two is what a decode step saves.
template <typename T>
__global__ void rope_half_pair_vec(const T* q, const T* k, const T* c, const T* sn, T* yq,
                                   T* yk, int Hq, int Hk, int S, int D, long long qb,
                                   long long qh, long long qs, long long kb, long long kh,
                                   long long ks, long long items_q, long long items) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    int half = D >> 1, per_row = half / (16 / (int)sizeof(T));
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < items;
         i += (long long)gridDim.x * blockDim.x) {
        if (i < items_q)
            rope_vec_item(q, c, sn, yq, Hq, S, D, half, per_row, qb, qh, qs, i);
        else
            rope_vec_item(k, c, sn, yk, Hk, S, D, half, per_row, kb, kh, ks, i - items_q);
    }
}

// q (B, Hq, S, D), k/v (B, Hkv, Skv, D): element strides given for dims b, h, s (d is
// contiguous). y is written as (B, S, Hq, D) contiguous. Grid (ceil(S*G/NW), Hkv, B).
#define NW 8
#define TK 32
#define MAXD 128
template <typename T>
__global__ void attention_decode(const T* q, const T* k, const T* v, T* y,
                                 int S, int Skv, int D, int G, int Hq,
                                 long long qsb, long long qsh, long long qss,
                                 long long ksb, long long ksh, long long kss,
                                 long long vsb, long long vsh, long long vss,
                                 float scale, int causal) {
    PDL_WAIT();    // inputs are earlier kernels' outputs
    PDL_LAUNCH();  // the next kernel may start loading its weights
    __shared__ float ks[TK][MAXD + 1];
    __shared__ float vs[TK][MAXD];
    __shared__ float qsm[NW][MAXD];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int b = blockIdx.z, hk = blockIdx.y;
    int item = blockIdx.x * NW + warp;           // item = i * G + g
    bool active = item < S * G;
    int i = active ? item / G : 0, g = active ? item % G : 0;
    int h = hk * G + g;
    int offset = Skv - S;
    int my_end = causal ? min(Skv, i + offset + 1) : Skv;
    // the block's last key: the largest end over its items
    int last_item = min(S * G - 1, (int)blockIdx.x * NW + NW - 1);
    int blk_end = causal ? min(Skv, last_item / G + offset + 1) : Skv;
    // q into registers first: its loads are in flight with the first K/V tile's (one round
    // trip to memory instead of two; at one key a call was ~4 us, mostly such latencies).
    float qreg[MAXD / 32];
    const T* qr = q + b * qsb + h * qsh + i * qss;
#pragma unroll
    for (int t = 0; t < MAXD / 32; ++t)
        qreg[t] = active && t * 32 + lane < D ? ld(qr + t * 32 + lane) * scale : 0.f;
    float m = NEG_INF, l = 0.f, acc[MAXD / 32];
#pragma unroll
    for (int t = 0; t < MAXD / 32; ++t) acc[t] = 0.f;
    const T* kb = k + b * ksb + hk * ksh;
    const T* vb = v + b * vsb + hk * vsh;
    for (int j0 = 0; j0 < blk_end; j0 += TK) {
        __syncthreads();
        // Stage only the keys some item of the block can see: rows past blk_end are never
        // scored (their p is 0 and skipped), and a short decode cache is one or two rows.
        int rows = min(TK, blk_end - j0);
        for (int e = threadIdx.x; e < rows * D; e += blockDim.x) {
            int j = e / D, d = e % D;
            ks[j][d] = ld(kb + (long long)(j0 + j) * kss + d);
            vs[j][d] = ld(vb + (long long)(j0 + j) * vss + d);
        }
        if (j0 == 0 && active)
#pragma unroll
            for (int t = 0; t < MAXD / 32; ++t)
                if (t * 32 + lane < D) qsm[warp][t * 32 + lane] = qreg[t];
        __syncthreads();
        if (!active || j0 >= my_end) continue;
        int j = j0 + lane;
        float s = NEG_INF;
        if (j < my_end) {
            s = 0.f;
            for (int d = 0; d < D; ++d) s += qsm[warp][d] * ks[lane][d];
        }
        float m_new = fmaxf(m, warp_max(s));
        float p = (j < my_end) ? __expf(s - m_new) : 0.f;
        float alpha = (m == NEG_INF) ? 0.f : __expf(m - m_new);
        l = l * alpha + warp_sum(p);
#pragma unroll
        for (int t = 0; t < MAXD / 32; ++t) acc[t] *= alpha;
        for (int jj = 0; jj < rows; ++jj) {  // rows: the same for the whole block
            float pj = __shfl_sync(0xffffffffu, p, jj);  // every lane shuffles: no early exit
            if (pj == 0.f) continue;
#pragma unroll
            for (int t = 0; t < MAXD / 32; ++t)
                if (t * 32 + lane < D) acc[t] += pj * vs[jj][t * 32 + lane];
        }
        m = m_new;
    }
    if (!active) return;
    float inv = l > 0.f ? 1.f / l : 0.f;
    T* yr = y + (((long long)b * S + i) * Hq + h) * D;
#pragma unroll
    for (int t = 0; t < MAXD / 32; ++t)
        if (t * 32 + lane < D) st(yr + t * 32 + lane, acc[t] * inv);
}
"""

#: Kernel templates, instantiated for each storage type.
TEMPLATES = ("rmsnorm", "add_rmsnorm", "add_rmsnorm_vec", "softmax", "silu", "silu_mul",
             "silu_mul8", "rope_half", "rope_half_vec", "rope_half_pair_vec", "attention_decode")
#: Storage type name in the source per NumPy dtype name.
TYPES = {"float32": "float", "float16": "h16", "bfloat16": "b16"}
#: Largest head dim of ``attention_decode`` (its shared-memory tile width).
MAX_HEAD_DIM = 128
#: Warps (query items) per attention block.
ATTENTION_WARPS = 8

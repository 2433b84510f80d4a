"""CUDA C source of the one-shot NVLink all-reduce (see :mod:`collectives.nvlink` for the
protocol: per-call epochs, double-buffered peer-visible data, flags written by peers).

A string only: :mod:`collectives.nvlink` compiles it with NVRTC on first use. Both kernels
start with ``PDL_WAIT(); PDL_LAUNCH();`` (:data:`dist_rt.runtime.cuda.source.PDL_SOURCE`):
they are launched with programmatic dependent launch, so the GEMV after them starts
streaming its weights while the ranks exchange their flags.
"""

from dist_rt.runtime.cuda.source import PDL_SOURCE

SOURCE = PDL_SOURCE + r"""
typedef unsigned long long u64;
struct h16 { unsigned short x; };
struct b16 { unsigned short x; };
union Vec { uint4 v; unsigned int w[4]; unsigned short h[8]; };

__device__ __forceinline__ float f16_to_f32(unsigned short h) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short f32_to_f16(float f) {
    unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ float b16_to_f32(unsigned short b) {
    return __uint_as_float(((unsigned int)b) << 16);
}
__device__ __forceinline__ unsigned short f32_to_b16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return 0x7fc0;  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return (unsigned short)(u >> 16);
}

// Lanes of one 16-byte vector per storage type: N elements, as float.
template <typename T> struct Lanes;
template <> struct Lanes<float> {
    enum { N = 4 };
    __device__ static float get(const Vec& r, int i) { return __uint_as_float(r.w[i]); }
    __device__ static void put(Vec& r, int i, float f) { r.w[i] = __float_as_uint(f); }
    __device__ static void load(Vec& r, int i, u64 p, long long k) {
        r.w[i] = ((const unsigned int*)p)[k];
    }
    __device__ static void store(const Vec& r, int i, u64 p, long long k) {
        ((unsigned int*)p)[k] = r.w[i];
    }
};
// The 16-bit types move the same 2-byte lanes; only their float conversions differ.
struct Lanes16 {
    enum { N = 8 };
    __device__ static void load(Vec& r, int i, u64 p, long long k) {
        r.h[i] = ((const unsigned short*)p)[k];
    }
    __device__ static void store(const Vec& r, int i, u64 p, long long k) {
        ((unsigned short*)p)[k] = r.h[i];
    }
};
template <> struct Lanes<h16> : Lanes16 {
    __device__ static float get(const Vec& r, int i) { return f16_to_f32(r.h[i]); }
    __device__ static void put(Vec& r, int i, float f) { r.h[i] = f32_to_f16(f); }
};
template <> struct Lanes<b16> : Lanes16 {
    __device__ static float get(const Vec& r, int i) { return b16_to_f32(r.h[i]); }
    __device__ static void put(Vec& r, int i, float f) { r.h[i] = f32_to_b16(f); }
};

__device__ __forceinline__ void st_release_sys(u64 addr, u64 v) {
    asm volatile("st.release.sys.global.u64 [%0], %1;" :: "l"(addr), "l"(v) : "memory");
}
__device__ __forceinline__ u64 ld_acquire_sys(u64 addr) {
    u64 v;
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(addr) : "memory");
    return v;
}
__device__ __forceinline__ long long lmin(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ u64 now_ns() {
    u64 t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t;
}

#define MAX_RANKS 8

// Steps 2-3 for block b (collectives/nvlink.py): tell every rank p that our chunk b of
// `epoch` is in our slot (thread p writes our row of p's flags; the release orders the
// block's copies, made visible to this thread by the caller's barrier, before the flag),
// then thread p waits for rank p's chunk b. ">=": a peer may already be one epoch ahead (it
// finished this one), never more. Ends with a barrier: every peer's chunk b is readable.
__device__ __forceinline__ void exchange_flags(const u64* base, u64 own, int rank, int world,
                                               int max_blocks, int b, u64 epoch,
                                               u64 flags_off, u64 timeout_ns) {
    const int tid = threadIdx.x;
    if (tid < world) {
        u64 peer = 0;
#pragma unroll
        for (int p = 0; p < MAX_RANKS; ++p)
            if (p == tid) peer = base[p];
        st_release_sys(peer + flags_off + 8ull * ((u64)rank * max_blocks + b), epoch);
    }
    if (tid < world) {
        const u64 flag = own + flags_off + 8ull * ((u64)tid * max_blocks + b);
        u64 t0 = 0;
        while (ld_acquire_sys(flag) < epoch) {
            if (timeout_ns) {
                u64 t = now_ns();
                if (t0 == 0) t0 = t;
                else if (t - t0 > timeout_ns) __trap();  // a dead peer: CUDA error, not a hang
            }
        }
    }
    __syncthreads();
}

// Step 5: the epoch of this call, also for the blocks this call did not launch.
__device__ __forceinline__ void finish_epoch(u64* counters, int b, int nb, int max_blocks,
                                             u64 epoch) {
    if (threadIdx.x == 0)
        for (int j = b; j < max_blocks; j += nb) counters[j] = epoch;
}

// One call of the one-shot all-reduce (steps 1-5 of collectives/nvlink.py's docstring).
// base0..base7: every rank's region as mapped in this process, in rank order (0 past world).
template <typename T>
__global__ void __launch_bounds__(512) allreduce_one_shot(
        u64 in, u64 out, long long n, int in_vec, int out_vec, int rank, int world,
        int max_blocks, u64 slot_bytes, u64 flags_off, u64 counters_off, u64 timeout_ns,
        u64 own, u64 base0, u64 base1, u64 base2, u64 base3, u64 base4, u64 base5,
        u64 base6, u64 base7) {
    PDL_WAIT();    // the input and this rank's counters are earlier kernels' writes
    PDL_LAUNCH();  // the next kernel may start loading its weights while ranks exchange
    typedef Lanes<T> L;
    const u64 base[MAX_RANKS] = {base0, base1, base2, base3, base4, base5, base6, base7};
    const int tid = threadIdx.x, b = blockIdx.x, nb = gridDim.x;
    u64* counters = (u64*)(own + counters_off);
    // All counters hold the last epoch (step 5 keeps them equal), so every block of this
    // call on every rank computes the same epoch and slot.
    const u64 epoch = counters[b] + 1ull;
    const u64 slot = (epoch & 1ull) * slot_bytes;
    const long long nvec = (n + L::N - 1) / L::N;
    const long long per = (nvec + nb - 1) / nb;
    const long long v0 = lmin(nvec, (long long)b * per), v1 = lmin(nvec, v0 + per);

    // 1. this rank's chunk into its own slot (padding lanes of the last vector are zeros)
    uint4* mine = (uint4*)(own + slot);
    for (long long v = v0 + tid; v < v1; v += blockDim.x) {
        Vec r;
        if (in_vec && (v + 1) * L::N <= n) {
            r.v = ((const uint4*)in)[v];
        } else {
            r.v.x = r.v.y = r.v.z = r.v.w = 0u;
#pragma unroll
            for (int i = 0; i < L::N; ++i)
                if (v * L::N + i < n) L::load(r, i, in, v * L::N + i);
        }
        mine[v] = r.v;
    }
    __syncthreads();
    exchange_flags(base, own, rank, world, max_blocks, b, epoch, flags_off, timeout_ns);

    // 4. sum chunk b over ranks in rank order (bit-identical on every rank); -0 + x == x.
    // All loads are issued before the first add, so their NVLink latencies overlap.
    for (long long v = v0 + tid; v < v1; v += blockDim.x) {
        Vec r[MAX_RANKS];
#pragma unroll
        for (int p = 0; p < MAX_RANKS; ++p)
            if (p < world) r[p].v = ((const uint4*)(base[p] + slot))[v];
        float acc[L::N];
#pragma unroll
        for (int i = 0; i < L::N; ++i) acc[i] = -0.f;
#pragma unroll
        for (int p = 0; p < MAX_RANKS; ++p) {
            if (p < world) {
#pragma unroll
                for (int i = 0; i < L::N; ++i) acc[i] += L::get(r[p], i);
            }
        }
        Vec o;
#pragma unroll
        for (int i = 0; i < L::N; ++i) L::put(o, i, acc[i]);
        if (out_vec && (v + 1) * L::N <= n) {
            ((uint4*)out)[v] = o.v;
        } else {
#pragma unroll
            for (int i = 0; i < L::N; ++i)
                if (v * L::N + i < n) L::store(o, i, out, v * L::N + i);
        }
    }
    finish_epoch(counters, b, nb, max_blocks, epoch);
}

// The one-shot all-reduce fused with the residual add and RMSNorm that follow it in a
// tensor-parallel block, one block per row of `cols` elements (cols % N == 0, every pointer
// 16-byte aligned: the host checks). With A = the all-reduced x rounded to T, exactly as the
// unfused all-reduce stores it:
//     S = A + residual (rounded to T)      Y = S * rsqrt(mean(S^2) + eps) * w
// Steps 1-3 and 5 are the one-shot's with chunk b = row b; step 4 sums, adds and squares.
template <typename T>
__global__ void __launch_bounds__(512) allreduce_add_rmsnorm(
        u64 in, u64 res, u64 w, u64 s_out, u64 y_out, int cols, float eps, int rank,
        int world, int max_blocks, u64 slot_bytes, u64 flags_off, u64 counters_off,
        u64 timeout_ns, u64 own, u64 base0, u64 base1, u64 base2, u64 base3, u64 base4,
        u64 base5, u64 base6, u64 base7) {
    PDL_WAIT();    // the input and this rank's counters are earlier kernels' writes
    PDL_LAUNCH();  // the next kernel may start loading its weights while ranks exchange
    typedef Lanes<T> L;
    const u64 base[MAX_RANKS] = {base0, base1, base2, base3, base4, base5, base6, base7};
    __shared__ float red[32];
    const int tid = threadIdx.x, b = blockIdx.x, nb = gridDim.x;
    u64* counters = (u64*)(own + counters_off);
    const u64 epoch = counters[b] + 1ull;
    const u64 slot = (epoch & 1ull) * slot_bytes;
    const int nvec = cols / L::N;
    const long long row = (long long)b * nvec;  // this row's first vector

    uint4* mine = (uint4*)(own + slot);
    for (int v = tid; v < nvec; v += blockDim.x) mine[row + v] = ((const uint4*)in)[row + v];
    __syncthreads();
    exchange_flags(base, own, rank, world, max_blocks, b, epoch, flags_off, timeout_ns);

    float ss = 0.f;
    for (int v = tid; v < nvec; v += blockDim.x) {
        Vec r[MAX_RANKS];
#pragma unroll
        for (int p = 0; p < MAX_RANKS; ++p)
            if (p < world) r[p].v = ((const uint4*)(base[p] + slot))[row + v];
        Vec rv, a, o;
        rv.v = ((const uint4*)res)[row + v];
#pragma unroll
        for (int i = 0; i < L::N; ++i) {
            float acc = -0.f;
#pragma unroll
            for (int p = 0; p < MAX_RANKS; ++p)
                if (p < world) acc += L::get(r[p], i);
            L::put(a, i, acc);
            L::put(o, i, L::get(a, i) + L::get(rv, i));
            const float sv = L::get(o, i);
            ss += sv * sv;
        }
        ((uint4*)s_out)[row + v] = o.v;
    }
    // Block sum of ss: warps, then the first warp over the warps' partials.
    const int lane = tid & 31, warp = tid >> 5, warps = (blockDim.x + 31) >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) red[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        float t = lane < warps ? red[lane] : 0.f;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) t += __shfl_xor_sync(0xffffffffu, t, off);
        if (lane == 0) red[0] = t;
    }
    __syncthreads();
    const float inv = rsqrtf(red[0] / cols + eps);
    for (int v = tid; v < nvec; v += blockDim.x) {  // each thread re-reads its own S vectors
        Vec o, wv, y;
        o.v = ((const uint4*)s_out)[row + v];
        wv.v = ((const uint4*)w)[v];
#pragma unroll
        for (int i = 0; i < L::N; ++i) L::put(y, i, L::get(o, i) * inv * L::get(wv, i));
        ((uint4*)y_out)[row + v] = y.v;
    }
    finish_epoch(counters, b, nb, max_blocks, epoch);
}
"""

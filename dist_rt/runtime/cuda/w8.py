"""Weight-only int8 GEMMs: ``Y = A @ ((Wq - zero_point) * scale)`` with Wq kept in 8 bits.

For decode-sized A (M = rows of A <= 4) a GEMM is bound by reading the weight, so halving
its bytes (int8 instead of fp16) is the whole point: the weight is dequantized in registers,
never written out.

``w8_gemv<T, SIGNED, MT>`` (M <= MT rows of A, MT in 1, 2, 4, 8, 16):

* The grid is (column tiles of 128, K splits). A block of 8 warps owns 128 columns and a
  range of K rows; each lane owns 4 consecutive columns and reads them as one 32-bit load,
  so a warp reads one 128-byte row segment per load, coalesced. Warps take interleaved
  rows, 4 rows in flight each (loads issued before any is used).
* The block's rows of A are staged in shared memory as float32 (``MT`` values per row,
  read as 16-byte broadcasts); every weight byte is used for all M rows while in registers.
* Bytes become floats without I2F: a byte ``b`` (``+128`` when signed) placed in the
  mantissa of 2^23 (one ``prmt``) is the float ``2^23 + b``; subtracting
  ``2^23 (+128) + zero_point`` gives ``b - zero_point`` exactly.
* Accumulation is float32; the warps' partial sums are reduced in shared memory, and the
  per-column scale is applied once at the end. When K is split across blocks (so that
  about ``SMs x blocks-per-SM`` blocks stream the weight: N = 2048 has only 16 column
  tiles), each block writes float32 partials and ``w8_reduce`` sums them, scales and rounds.
* N % 4 != 0 (or a misaligned weight) switches to byte loads; any K works.

For M > 4 (larger decode batches, prefill) ``w8_dequant`` writes the dequantized weight
into a temporary of A's dtype and cuBLAS multiplies (:func:`cublas.matmul2d`). That is
correct but **slower** than an fp16 GEMM (it reads the int8 weight and writes and reads a
16-bit copy); a tensor-core kernel dequantizing tiles in shared memory would be faster.
The temporary is never cached: keeping it would give back the memory the int8 weight saves.

Everything is kernel launches and pool allocations on the current stream, without host
synchronization, so a CUDA graph captures it.

Rejected alternatives: one warp per 128 columns over all of K (too few blocks for N = 2048
and 4096 to saturate HBM); atomicAdd of partial sums (needs a zeroed buffer, one more
launch anyway, and a summation order that changes between runs); 16-byte loads per lane
(fewer load instructions, but 512-column tiles leave N = 2048 with 4 tiles).
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from dist_rt import dtypes
from dist_rt.runtime.cuda import cublas
from dist_rt.runtime.cuda.device import sm_count
from dist_rt.runtime.cuda.source import PRELUDE, TYPES

SOURCE = PRELUDE + r"""
struct __align__(16) vec4 { float x, y, z, w; };  // not float4: no NVRTC header needed

#define NW 8              // warps per block
#define UNROLL 4          // weight rows in flight per warp
#define TILE_N 128        // columns per block: 32 lanes x 4 bytes
#define SMEM_FLOATS 4096  // 16 KiB: A staging (KT x MT), then the reduction (NW x RG x 128)

// Column j of the 4 bytes of v as the float 2^23 + byte: prmt puts the byte under 0x4B.
__device__ __forceinline__ float mantissa(unsigned int v, unsigned int j) {
    return __int_as_float(__byte_perm(v, 0x4B000000u, 0x7440u + j));
}

__device__ __forceinline__ unsigned int load4(const unsigned char* p, int left, bool vec) {
    if (vec) return __ldg(reinterpret_cast<const unsigned int*>(p));
    unsigned int v = 0u;
#pragma unroll
    for (int j = 0; j < 4; ++j)
        if (j < left) v |= ((unsigned int)__ldg(p + j)) << (8 * j);
    return v;
}

__device__ __forceinline__ float zero_point(const unsigned char* zp, long long i, bool sgn) {
    return sgn ? (float)(signed char)zp[i] : (float)zp[i];
}

// a (M, K) rows lda apart; w (K, N) row-major bytes; scale[n * s_step] float32;
// zp[n * z_step] (when has_zp); y (M, N) contiguous, or float32 partials (splits, M, N).
// Min blocks per SM as w8.py's _BLOCKS_PER_SM: <= 32 registers for MT <= 2 (full occupancy:
// HBM needs many loads in flight), room for the MT x 4 accumulators above that.
template <typename T, bool SIGNED, int MT>
__global__ void __launch_bounds__(NW * 32, MT <= 2 ? 8 : MT == 4 ? 5 : MT == 8 ? 4 : 2)
w8_gemv(const T* __restrict__ a, long long lda, const unsigned char* __restrict__ w,
        const float* __restrict__ scale, int s_step, const unsigned char* __restrict__ zp,
        int z_step, int has_zp, T* __restrict__ y, float* __restrict__ part, int use_part,
        int M, int K, int N, int rows_per_split, int vec_ok) {
    const int KT = SMEM_FLOATS / MT;        // rows of A staged at a time
    const int RG = MT < 4 ? MT : 4;         // output rows per reduction round
    __shared__ __align__(16) float smem[SMEM_FLOATS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int col = blockIdx.x * TILE_N + lane * 4;
    const int k_begin = blockIdx.y * rows_per_split;
    const int k_end = min(K, k_begin + rows_per_split);
    const bool live = col < N;
    const bool vec = vec_ok && col + 4 <= N;
    const int left = N - col;
    float bias[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        int n = min(col + j, N - 1);
        float z = has_zp ? zero_point(zp, (long long)n * z_step, SIGNED) : 0.f;
        bias[j] = 8388608.f + (SIGNED ? 128.f : 0.f) + z;
    }
    float acc[MT][4];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[m][j] = 0.f;

    for (int k0 = k_begin; k0 < k_end; k0 += KT) {
        const int kt = min(KT, k_end - k0);
        __syncthreads();  // the previous chunk's readers are done with smem
        for (int e = threadIdx.x; e < kt * MT; e += blockDim.x) {
            int r = e / MT, m = e - r * MT;
            smem[e] = m < M ? ld(a + m * lda + k0 + r) : 0.f;
        }
        __syncthreads();
        const unsigned char* wk = w + (long long)k0 * N + col;
        for (int r0 = warp; r0 < kt; r0 += NW * UNROLL) {
            unsigned int v[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                int r = r0 + u * NW;
                v[u] = (live && r < kt) ? load4(wk + (long long)r * N, left, vec) : 0u;
            }
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                int r = r0 + u * NW;
                if (r >= kt) continue;  // the same for the whole warp
                unsigned int q = SIGNED ? (v[u] ^ 0x80808080u) : v[u];
                float f[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) f[j] = mantissa(q, j) - bias[j];
                const float* ar = smem + r * MT;
                float av[MT];
                if (MT % 4 == 0) {
#pragma unroll
                    for (int i = 0; i < MT / 4; ++i) {
                        vec4 t = reinterpret_cast<const vec4*>(ar)[i];
                        av[4 * i] = t.x; av[4 * i + 1] = t.y;
                        av[4 * i + 2] = t.z; av[4 * i + 3] = t.w;
                    }
                } else {
#pragma unroll
                    for (int m = 0; m < MT; ++m) av[m] = ar[m];
                }
#pragma unroll
                for (int m = 0; m < MT; ++m)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[m][j] = fmaf(av[m], f[j], acc[m][j]);
            }
        }
    }

    // Sum the warps' partials, RG output rows per round, through smem.
#pragma unroll
    for (int m0 = 0; m0 < MT; m0 += RG) {
        if (m0 >= M) continue;  // uniform over the block
        __syncthreads();
#pragma unroll
        for (int g = 0; g < RG; ++g)
            reinterpret_cast<vec4*>(smem + (warp * RG + g) * TILE_N)[lane] =
                vec4{acc[m0 + g][0], acc[m0 + g][1], acc[m0 + g][2], acc[m0 + g][3]};
        __syncthreads();
        for (int e = threadIdx.x; e < RG * TILE_N; e += blockDim.x) {
            int g = e / TILE_N, c = e - g * TILE_N;
            int m = m0 + g, n = blockIdx.x * TILE_N + c;
            if (m < M && n < N) {
                float s = 0.f;
#pragma unroll
                for (int q = 0; q < NW; ++q) s += smem[(q * RG + g) * TILE_N + c];
                if (use_part) part[((long long)blockIdx.y * M + m) * N + n] = s;
                else st(y + (long long)m * N + n, s * scale[(long long)n * s_step]);
            }
        }
    }
}

// y[m, n] = scale[n] * sum over splits of part[split, m, n].
template <typename T>
__global__ void w8_reduce(const float* __restrict__ part, int splits, int N, long long total,
                          const float* __restrict__ scale, int s_step, T* __restrict__ y) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        float s = 0.f;
        for (int p = 0; p < splits; ++p) s += part[p * total + i];
        st(y + i, s * scale[(i % N) * s_step]);
    }
}

// out (K, N) = (w - zp) * scale in T, for the cuBLAS path.
template <typename T, bool SIGNED>
__global__ void w8_dequant(const unsigned char* __restrict__ w, const float* __restrict__ scale,
                           int s_step, const unsigned char* __restrict__ zp, int z_step,
                           int has_zp, T* __restrict__ out, long long total, int N) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long n = i % N;
        float q = SIGNED ? (float)(signed char)w[i] : (float)w[i];
        if (has_zp) q -= zero_point(zp, n * z_step, SIGNED);
        st(out + i, q * scale[n * s_step]);
    }
}
"""

#: Rows of A up to this use ``w8_gemv``; more use dequantize + cuBLAS. Measured on H100
#: (examples/50_quantized): at M = 1 the kernel took 0.73-1.03x the time of cuBLAS on the
#: fp16 weight, at M = 16 2.4-4.6x (its fp32 CUDA-core math grows with M while the fp16
#: GEMM stays bandwidth-bound), so only the smallest decode batches use it.
GEMV_MAX_ROWS = 4
#: ``w8_gemv`` row-count instantiations (MT); a call uses the smallest that holds M.
ROW_TILES = (1, 2, 4, 8, 16)
_THREADS = 256
_TILE_N = 128
#: A K split gets at least this many rows (8 warps x 4 rows in flight, twice).
_MIN_SPLIT_ROWS = 64
_MAX_SPLITS = 64
#: Resident blocks per SM per MT: the kernel's ``__launch_bounds__`` minimum (registers).
_BLOCKS_PER_SM = {1: 8, 2: 8, 4: 5, 8: 4, 16: 2}

_MODULES: dict[tuple[str, bool], cupy.RawModule] = {}


def _flag(signed: bool) -> str:
    return "true" if signed else "false"


def _module(t: str, signed: bool) -> cupy.RawModule:
    """The module of one activation type and weight signedness (NVRTC once per process)."""
    key = (t, signed)
    if key not in _MODULES:
        names = [f"w8_gemv<{t}, {_flag(signed)}, {mt}>" for mt in ROW_TILES]
        names += [f"w8_reduce<{t}>", f"w8_dequant<{t}, {_flag(signed)}>"]
        _MODULES[key] = cupy.RawModule(code=SOURCE, options=("--std=c++14",),
                                       name_expressions=names)
    return _MODULES[key]


def _type_of(dtype: Any) -> str | None:
    dt = np.dtype(dtype)
    return TYPES["bfloat16"] if dt == dtypes.bfloat16 else TYPES.get(dt.name)


def _grid_stride_blocks(total: int) -> int:
    return int(max(1, min((total + _THREADS - 1) // _THREADS, sm_count() * 16)))


def splits_for(m: int, k: int, n: int) -> int:
    """How many K ranges ``w8_gemv`` splits a (M, K) x (K, N) product into.

    Enough blocks that every SM holds its share (``_BLOCKS_PER_SM`` for the row tile), each
    K range at least ``_MIN_SPLIT_ROWS`` rows, at most ``_MAX_SPLITS`` ranges.
    """
    mt = next(v for v in ROW_TILES if v >= m)
    tiles = -(-n // _TILE_N)
    want = -(-sm_count() * _BLOCKS_PER_SM[mt] // tiles)
    return int(max(1, min(want, k // _MIN_SPLIT_ROWS, _MAX_SPLITS)))


def supports(a: Any, wq: Any, scale: Any, zero_point: Any = None) -> bool:
    """True when :func:`matmul` takes these operands (else the generic op runs)."""
    if (_type_of(a.dtype) is None or wq.dtype not in (np.int8, np.uint8) or wq.ndim != 2
            or a.ndim < 1 or a.shape[-1] != wq.shape[0] or scale.ndim > 1
            or scale.size not in (1, wq.shape[1]) or scale.dtype.kind != "f"):
        return False
    return zero_point is None or (zero_point.dtype == wq.dtype
                                  and zero_point.size == scale.size and zero_point.ndim <= 1)


def _rows(a: cupy.ndarray, k: int) -> tuple[cupy.ndarray, int]:
    """A as (M, K) rows with contiguous elements, and the row stride in elements."""
    m = int(np.prod(a.shape[:-1], dtype=np.int64))
    if a.flags.c_contiguous:
        return a.reshape(m, k), k
    if a.ndim == 2 and a.strides[1] == a.itemsize and a.strides[0] % a.itemsize == 0:
        return a, a.strides[0] // a.itemsize  # e.g. a Split view of a merged projection
    return cupy.ascontiguousarray(a).reshape(m, k), k


def matmul(a: cupy.ndarray, wq: cupy.ndarray, scale: cupy.ndarray,
           zero_point: cupy.ndarray | None = None) -> cupy.ndarray:
    """``A @ ((Wq - zero_point) * scale)`` in A's dtype (float32 accumulation).

    Args:
        a: (..., K) float32, float16 or bfloat16.
        wq: (K, N) int8 or uint8.
        scale: (N,) or one element, a float dtype (float32 is read directly).
        zero_point: None, or Wq's dtype and the shape of ``scale``.

    Returns:
        (..., N) in A's dtype.
    """
    k, n = (int(d) for d in wq.shape)
    signed = wq.dtype == np.int8
    t = _type_of(a.dtype)
    a2, lda = _rows(a, k)
    m = int(a2.shape[0])
    y = cupy.empty((m, n), dtype=a.dtype)
    if m == 0 or n == 0:
        return y.reshape(*a.shape[:-1], n)
    if k == 0:
        y.fill(0)
        return y.reshape(*a.shape[:-1], n)
    wq = wq if wq.flags.c_contiguous else cupy.ascontiguousarray(wq)
    scale = cupy.ascontiguousarray(scale.reshape(-1).astype(cupy.float32, copy=False))
    has_zp = zero_point is not None
    zp = cupy.ascontiguousarray(zero_point.reshape(-1)) if has_zp else wq  # wq: unread
    params = (scale, np.int32(scale.size > 1), zp, np.int32(has_zp and zp.size > 1),
              np.int32(has_zp))
    mod = _module(t, signed)
    if m > GEMV_MAX_ROWS:
        deq = cupy.empty((k, n), dtype=a.dtype)
        mod.get_function(f"w8_dequant<{t}, {_flag(signed)}>")(
            (_grid_stride_blocks(k * n),), (_THREADS,),
            (wq, scale, params[1], zp, params[3], params[4], deq, np.int64(k * n),
             np.int32(n)))
        cublas.matmul2d(a2, deq, out=y)
        return y.reshape(*a.shape[:-1], n)
    mt = next(v for v in ROW_TILES if v >= m)
    splits = splits_for(m, k, n)
    rows = -(-k // splits)
    splits = -(-k // rows)
    part = cupy.empty((splits, m, n), dtype=cupy.float32) if splits > 1 else None
    vec_ok = n % 4 == 0 and wq.data.ptr % 4 == 0
    mod.get_function(f"w8_gemv<{t}, {_flag(signed)}, {mt}>")(
        (-(-n // _TILE_N), splits), (_THREADS,),
        (a2, np.int64(lda), wq, *params, y, y if part is None else part,
         np.int32(part is not None), np.int32(m), np.int32(k), np.int32(n), np.int32(rows),
         np.int32(vec_ok)))
    if part is not None:
        mod.get_function(f"w8_reduce<{t}>")(
            (_grid_stride_blocks(m * n),), (_THREADS,),
            (part, np.int32(splits), np.int32(n), np.int64(m * n), scale, params[1], y))
    return y.reshape(*a.shape[:-1], n)


def weight_only_matmul(layer, inputs, rt) -> list | None:
    """dist_rt::WeightOnlyMatMul: the kernels above; None (the generic op) when they do not
    take the operands (float64 A, other weight dtypes, bad shapes, which the op reports)."""
    a, wq, scale = inputs[0], inputs[1], inputs[2]
    zp = inputs[3] if len(inputs) > 3 else None
    if not supports(a, wq, scale, zp):
        return None
    return [matmul(a, wq, scale, zp)]

"""Fused CUDA kernels for hot ops, behind a small explicit registry.

``lookup(layer)`` returns the kernel wrapper for a layer, or None when the generic op (its
``_run`` through ``rt.xp = cupy``) should run. A wrapper may still decline at run time by
returning None (an unsupported dtype, a broadcast it does not handle...); the backend then
runs the generic op, so a fused kernel never changes what is computed, only how fast.

Registry (domain, op type) -> wrapper:

=========================  =========================================================
``RMSNormalization``       ``rmsnorm`` kernel (last axis, weight of the same dtype)
``dist_rt::AddRMSNorm``    ``add_rmsnorm(_vec)`` kernel: S = A + B and rmsnorm(S) in one pass
``dist_rt::AllReduce...``  ``AllReduceAddRMSNorm``: one NVLink kernel (``collective_norm.py``)
``Softmax`` (opset >= 13)  ``softmax`` kernel (last axis)
``dist_rt::Silu``          ``silu`` kernel
``dist_rt::SiluMul``       ``silu_mul`` kernel (A and B of the same shape)
``dist_rt::Attention``     S <= 16 and D <= 128: ``attention_decode`` (CUDA cores);
                           S > 16, fp16/bf16, D 64 or 128, sm_90: the wgmma flash
                           kernel (``flash_wgmma.py``); S > 16, fp16/bf16,
                           D % 16 == 0 <= 128, sm_80+: the mma.sync flash kernel
                           (``flash.py``, 16 or 32 rows a warp);
                           else causal S == Skv >= 512 by query chunks, or per batch
                           item cuBLAS scale*q k^T -> in-place causal softmax -> cuBLAS
                           P v (direct cuBLAS, capturable); ``output_layout="bshd"``:
                           the kernels' (B, S, H, D) buffer as is, cuBLAS's Y as a
                           transposed view
``dist_rt::RotaryHalf``    ``rope_half(_vec)`` kernel (x*cos + rotate_half(x)*sin), ``rope.py``
``dist_rt::RotaryHalf...`` ``RotaryHalfPair`` (q and k of one cos/sin): one
                           ``rope_half_pair_vec`` launch when both take the vector path,
                           else ``rope_half`` each, ``rope.py``
``MatMul``                 (..., K) @ (K, N) as one flattened 2-D GEMM (up to
                           ``gemv.MAX_ROWS`` rows and a weight stored (N, K): the ``gemv``
                           kernel); equal batch dims
                           as one strided-batched GEMM (direct cuBLAS, capturable)
``Split``, ``Transpose``   views of the input, no copies (readers take strided input)
``Gather``                 while capturing a graph: no host bounds check (see gather)
=========================  =========================================================

``dist_rt::WeightOnlyMatMul`` (int8/uint8 weights) runs :mod:`.w8`: a GEMV kernel that
dequantizes in registers for M <= 16 rows, else dequantize + cuBLAS.

Attention's long queries run a tensor-core flash kernel (:mod:`.flash_wgmma` on Hopper,
:mod:`.flash` elsewhere): the scores
never reach memory. The cuBLAS paths remain for what it does not cover (fp32, D > 128 or
not a multiple of 16, pre-sm_80 GPUs): they materialize the scores (Hq, S, Skv) of one
batch item at a time in the input dtype (never in fp32), cuBLAS tensor cores do both
products with float32 accumulation and the scale folded into the first, and the softmax
kernel reads and writes the scores once, in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import cupy
import numpy as np

from dist_rt import dtypes
from dist_rt.runtime.cuda import (
    collective_norm,
    cublas,
    flash,
    flash_wgmma,
    gemv,
    l2_prefetch,
    matmul_cast,
    matmul_silu,
    w8,
)
from dist_rt.runtime.cuda.launch import launch
from dist_rt.runtime.cuda.rope import rope_half, rope_half_pair
from dist_rt.runtime.cuda.source import ATTENTION_WARPS, MAX_HEAD_DIM, SOURCE, TEMPLATES, TYPES

_MODULE: cupy.RawModule | None = None
#: Query lengths up to this use the CUDA-core decode kernel; longer ones the tensor-core
#: flash kernel (:mod:`.flash`), or the cuBLAS paths where it does not apply.
DECODE_MAX_QUERIES = 16
_THREADS = 256


def _module() -> cupy.RawModule:
    """The compiled module (NVRTC once per process; CuPy caches the binary on disk)."""
    global _MODULE
    if _MODULE is None:
        names = [f"{t}<{c}>" for t in TEMPLATES for c in TYPES.values()]
        _MODULE = cupy.RawModule(code=SOURCE, options=("--std=c++14",), name_expressions=names)
    return _MODULE


def _type_of(dtype: Any) -> str | None:
    dt = np.dtype(dtype)
    if dt == dtypes.bfloat16:
        return TYPES["bfloat16"]
    return TYPES.get(dt.name)


class _Launcher:
    """A kernel of :data:`SOURCE` called like a CuPy kernel, ``k(grid, block, args)``, but
    launched with programmatic dependent launch (every kernel there starts with
    ``PDL_WAIT()``; see :mod:`.launch`)."""

    __slots__ = ("kernel",)

    def __init__(self, kernel: Any):
        self.kernel = kernel

    def __call__(self, grid: Sequence[int], block: Sequence[int], args: Sequence[Any]) -> None:
        launch(self.kernel, tuple(grid), int(block[0]), args)


_LAUNCHERS: dict[str, _Launcher] = {}


def _fn(template: str, dtype: Any) -> _Launcher:
    name = f"{template}<{_type_of(dtype)}>"
    fn = _LAUNCHERS.get(name)
    if fn is None:
        fn = _LAUNCHERS[name] = _Launcher(_module().get_function(name))
    return fn


def _row_threads(cols: int) -> int:
    """Threads for one row of ``cols`` (about 4 columns each, 32..1024).

    Rows of fewer than 4 columns (a softmax over one key) once gave ``1 << -2``: CuPy's
    "negative shift count" in the unfused attention graphs at one token.
    """
    return int(min(1024, max(32, 1 << max(0, math.ceil(math.log2(max(cols, 1))) - 2))))


def rmsnorm(layer, inputs, rt) -> list | None:
    """RMSNormalization over the last axis with a weight of the input's dtype."""
    x, w = inputs
    if _type_of(x.dtype) is None or w.dtype != x.dtype or w.ndim != 1:
        return None
    if int(layer.attr("axis", -1)) % x.ndim != x.ndim - 1 or w.shape[0] != x.shape[-1]:
        return None
    x = cupy.ascontiguousarray(x)
    y = cupy.empty_like(x)
    cols = x.shape[-1]
    rows = x.size // max(cols, 1)
    if rows:
        _fn("rmsnorm", x.dtype)((rows,), (_row_threads(cols),),
                                (x, cupy.ascontiguousarray(w), y, np.int32(cols),
                                 np.float32(layer.attr("epsilon", 1e-5))))
    return [y]


def add_rmsnorm(layer, inputs, rt) -> list | None:
    """dist_rt::AddRMSNorm in one launch: ``S = A + B`` (rounded as Add stores it) and
    ``Y = rmsnorm(S) * w``, with A and B of one shape (else the generic op broadcasts)."""
    a, b, w = inputs
    if (a.dtype != b.dtype or a.shape != b.shape or _type_of(a.dtype) is None or a.ndim == 0
            or w.dtype != a.dtype or w.ndim != 1 or w.shape[0] != a.shape[-1]
            or int(layer.attr("axis", -1)) % a.ndim != a.ndim - 1):
        return None
    a, b = cupy.ascontiguousarray(a), cupy.ascontiguousarray(b)
    s, y = cupy.empty_like(a), cupy.empty_like(a)
    w = cupy.ascontiguousarray(w)
    cols = a.shape[-1]
    rows = a.size // max(cols, 1)
    vec = 16 // a.itemsize
    if not rows:
        return [s, y]
    args = (a, b, w, s, y, np.int32(cols), np.float32(layer.attr("epsilon", 1e-5)))
    if (cols % vec == 0 and cols // vec <= 1024 and a.data.ptr % 16 == 0
            and b.data.ptr % 16 == 0 and w.data.ptr % 16 == 0):
        # 16-byte vectors, the row held in registers: the scalar kernel ran at ~1.8 TB/s.
        threads = max(32, -(-(cols // vec) // 32) * 32)
        _fn("add_rmsnorm_vec", a.dtype)((rows,), (threads,), args)
    else:
        _fn("add_rmsnorm", a.dtype)((rows,), (_row_threads(cols),), args)
    return [s, y]


def softmax_rows(x, *, scale: float = 1.0, causal: bool = False, s_q: int = 1,
                 offset: int = 0, out=None):
    """Softmax over the last axis of a contiguous array (in place when ``out is x``)."""
    y = cupy.empty_like(x) if out is None else out
    cols = x.shape[-1]
    rows = x.size // max(cols, 1)
    if rows:
        _fn("softmax", x.dtype)((rows,), (_row_threads(cols),),
                                (x, y, np.int32(cols), np.float32(scale), np.int32(causal),
                                 np.int32(max(s_q, 1)), np.int32(offset)))
    return y


def softmax(layer, inputs, rt) -> list | None:
    """ONNX Softmax (opset >= 13) along the last axis."""
    (x,) = inputs
    if (layer.opset < 13 or _type_of(x.dtype) is None or x.ndim == 0
            or int(layer.attr("axis", -1)) % x.ndim != x.ndim - 1):
        return None
    return [softmax_rows(cupy.ascontiguousarray(x))]


def _elementwise(name: str, arrays: Sequence[Any]) -> Any:
    y = cupy.empty_like(arrays[0])
    n = y.size
    if n:
        blocks = int(min(65535, (n + _THREADS - 1) // _THREADS))
        _fn(name, y.dtype)((blocks,), (_THREADS,), (*arrays, y, np.int64(n)))
    return y


def silu(layer, inputs, rt) -> list | None:
    """dist_rt::Silu."""
    (a,) = inputs
    if _type_of(a.dtype) is None:
        return None
    return [_elementwise("silu", [cupy.ascontiguousarray(a)])]


def silu_mul(layer, inputs, rt) -> list | None:
    """dist_rt::SiluMul with A and B of one shape and dtype (else the broadcasting op)."""
    a, b = inputs
    if _type_of(a.dtype) is None or a.dtype != b.dtype or a.shape != b.shape:
        return None
    per = 16 // a.itemsize
    rows_a, rows_b = _row_stride(a), _row_stride(b)
    if (a.size and a.shape[-1] % per == 0 and rows_a is not None and rows_b is not None
            and rows_a % per == 0 and rows_b % per == 0
            and a.data.ptr % 16 == 0 and b.data.ptr % 16 == 0):
        # 16-byte vectors straight from the merged GEMM's halves: no copies, and scalar
        # 2-byte accesses reached only ~1.5 TB/s on H100 at 8x2048.
        y = cupy.empty(a.shape, dtype=a.dtype)
        n = a.size // per
        blocks = int(min(65535, (n + _THREADS - 1) // _THREADS))
        _fn("silu_mul8", a.dtype)((blocks,), (_THREADS,),
                                  (a, b, y, np.int64(a.shape[-1] // per),
                                   np.int64(rows_a // per), np.int64(rows_b // per),
                                   np.int64(n)))
        return [y]
    a, b = cupy.ascontiguousarray(a), cupy.ascontiguousarray(b)
    return [_elementwise("silu_mul", [a, b])]


def _row_stride(x) -> int | None:
    """Elements between rows when ``x`` is a (rows, last dim) matrix in memory: last dim
    contiguous, leading dims collapsing into one stride, rows not overlapping; else None."""
    if x.ndim == 0 or (x.shape[-1] > 1 and x.strides[-1] != x.itemsize):
        return None
    lead = [(n, s) for n, s in zip(x.shape[:-1], x.strides[:-1], strict=True) if n > 1]
    if not lead:
        return x.shape[-1]
    for (_, outer), (n, inner) in zip(lead, lead[1:], strict=False):
        if outer != inner * n:
            return None
    step = lead[-1][1]
    if step % x.itemsize or step < x.shape[-1] * x.itemsize:
        return None
    return step // x.itemsize


def transpose(layer, inputs, rt) -> list | None:
    """Transpose as a view: its readers take strided input (the generic op copies)."""
    x = inputs[0]
    perm = layer.attr("perm", None)
    perm = tuple(range(x.ndim))[::-1] if perm is None else tuple(int(p) % max(x.ndim, 1)
                                                                  for p in perm)
    if sorted(perm) != list(range(x.ndim)):
        return None
    return [x.transpose(perm)]


def _elem_strides(x) -> tuple[int, ...]:
    return tuple(s // x.itemsize for s in x.strides)


def attention(layer, inputs, rt, path: str | None = None) -> list | None:
    """dist_rt::Attention without a mask input (causal or not), GQA by head mapping.

    ``path`` forces one implementation (a tactic, see :mod:`dist_rt.runtime.cuda.tactics`):
    ``"wg"`` (the Hopper wgmma flash kernel at any query length, :mod:`.flash_wgmma`; where
    it does not apply, the default variant of :mod:`.flash`), ``"tc"`` (the mma.sync
    flash kernel at any query length, :mod:`.flash`, 16 query
    rows a warp), ``"tc2"`` (its variant with 32 rows a warp, two m16 tiles),
    ``"flash"`` (the CUDA-core flash-style kernel at any query length; needs D <= 128),
    ``"chunks"`` (causal S == Skv by query chunks) or ``"cublas"`` (cuBLAS + in-place
    softmax per batch item). None picks by query length: the CUDA-core kernel up to
    :data:`DECODE_MAX_QUERIES` queries, above that the wgmma kernel on sm_90, else the
    mma.sync kernel, with 32 rows a warp
    when that fills the GPU more than once and 16 otherwise
    (:func:`flash.default_rows_per_warp`), then the cuBLAS paths for what it does not
    cover. A forced path that does not fit the call falls through to
    the default choice, so the result is always computed.

    Returns Y (B, Hq, S, D) as a transposed view of a (B, S, Hq, D) buffer, so the exporter's
    following ``Transpose(0, 2, 1, 3) -> Reshape`` costs no copy; with
    ``output_layout="bshd"`` (that Transpose folded into the layer) the buffer itself.
    """
    layout = layer.attr("output_layout", "bhsd")
    bshd = (layout.decode() if isinstance(layout, bytes) else str(layout)) == "bshd"
    if len(inputs) > 3 and inputs[3] is not None:
        return None
    q, k, v = inputs[:3]
    if (_type_of(q.dtype) is None or not (q.dtype == k.dtype == v.dtype)
            or q.ndim != 4 or k.ndim != 4 or v.ndim != 4):
        return None
    b, hq, s, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    if hkv == 0 or hq % hkv or v.shape[3] != d or k.shape[3] != d:
        return None
    heads, kv_heads = int(layer.attr("num_heads", 0)), int(layer.attr("kv_num_heads", 0))
    if heads and kv_heads and hq != hkv * (heads // kv_heads):
        return None
    g = hq // hkv
    scale = layer.attr("scale", None)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    causal = int(layer.attr("causal", 0))
    if path in ("wg", "tc", "tc2") or (path is None and s > DECODE_MAX_QUERIES):
        y = None
        if path in ("wg", None):  # sm_90 only; else the mma.sync kernel below
            y = flash_wgmma.flash_attention(q, k, v, scale, bool(causal))
        if y is None:
            rows = {"tc": 16, "tc2": 32}.get(path) or flash.default_rows_per_warp(b, hq, s, d)
            y = flash.flash_attention(q, k, v, scale, bool(causal), rows_per_warp=rows)
        if y is not None:
            return [y if bshd else y.transpose(0, 2, 1, 3)]
        path = None  # not covered (dtype, head dim, GPU): the default choice below
    decode = s <= DECODE_MAX_QUERIES if path is None else path == "flash"
    if decode and d <= MAX_HEAD_DIM:
        q, k, v = (x if x.strides[-1] == x.itemsize else cupy.ascontiguousarray(x)
                   for x in (q, k, v))
        y = cupy.empty((b, s, hq, d), dtype=q.dtype)
        grid = ((s * g + ATTENTION_WARPS - 1) // ATTENTION_WARPS, hkv, b)
        if y.size:
            _fn("attention_decode", q.dtype)(
                grid, (32 * ATTENTION_WARPS,),
                (q, k, v, y, np.int32(s), np.int32(skv), np.int32(d), np.int32(g),
                 np.int32(hq), *(np.int64(x) for x in _elem_strides(q)[:3]),
                 *(np.int64(x) for x in _elem_strides(k)[:3]),
                 *(np.int64(x) for x in _elem_strides(v)[:3]),
                 np.float32(scale), np.int32(causal)))
        return [y if bshd else y.transpose(0, 2, 1, 3)]
    chunks = s >= 2 * CAUSAL_CHUNK_ROWS if path is None else path in ("chunks", "flash")
    if chunks and causal and s == skv:
        y = _attention_causal_chunks(q, k, v, scale, g)
        return [y.transpose(0, 2, 1, 3) if bshd else y]
    # Long queries, per batch item: scores (Hkv, G*S, Skv) = scale * Q K^T on tensor cores
    # (16-bit scores, float32 accumulation), one in-place causal softmax pass, then P V.
    # The scores are materialized once, in the input dtype, and one item at a time, so their
    # buffer is Hkv*G*S*Skv elements, not B times that.
    if q.strides[-1] != q.itemsize or q.strides[1] != s * q.strides[2]:
        q = cupy.ascontiguousarray(q)  # (G*S, D) rows of one kv group must be evenly spaced
    k, v = (x if x.strides[-1] == x.itemsize else cupy.ascontiguousarray(x) for x in (k, v))
    qs, ks, vs = _elem_strides(q), _elem_strides(k), _elem_strides(v)
    rows = g * s
    scores = cupy.empty((hkv, rows, skv), dtype=q.dtype)
    y = cupy.empty((b, hq, s, d), dtype=q.dtype)
    isz = q.itemsize
    for i in range(b):
        cublas.matmul_batched(
            q.data.ptr + i * qs[0] * isz, qs[2], g * qs[1], False,
            k.data.ptr + i * ks[0] * isz, ks[2], ks[1], True,
            scores.data.ptr, skv, rows * skv, rows, skv, d, hkv, q.dtype, alpha=scale)
        softmax_rows(scores, causal=bool(causal), s_q=s, offset=skv - s, out=scores)
        cublas.matmul_batched(
            scores.data.ptr, skv, rows * skv, False,
            v.data.ptr + i * vs[0] * isz, vs[2], vs[1], False,
            y.data.ptr + i * hq * s * d * isz, d, rows * d, rows, d, skv, hkv, q.dtype)
    # (G*S, D) rows of a kv group are not evenly spaced in (B, S, H, D): a view, not a copy.
    return [y.transpose(0, 2, 1, 3) if bshd else y]


#: Causal self-attention with S >= 2x this many queries is split into query chunks of about
#: this many rows, each scoring only the keys its causal frontier reaches.
CAUSAL_CHUNK_ROWS = 256
_MAX_CAUSAL_CHUNKS = 8


def _attention_causal_chunks(q, k, v, scale: float, g: int):
    """Causal attention (S == Skv) by query chunks: about half the GEMM work and bytes.

    Query chunk ``[i0, i1)`` needs keys ``[0, i1)`` only, so with ``n`` chunks the scores
    cover ``(n + 1) / (2n)`` of the full square. Per chunk and group head ``g`` (a kv head
    serves ``G`` query heads), one strided-batched GEMM over all (batch, kv head) items
    scores the chunk, the softmax kernel masks the diagonal block in place, and a second
    GEMM writes the chunk's rows of Y. K and V are made contiguous (B, Hkv, S, D) first so
    one stride walks every (batch, kv head) item.
    """
    b, hq, s, d = q.shape
    hkv = k.shape[1]
    q, k, v = (cupy.ascontiguousarray(x) for x in (q, k, v))
    y = cupy.empty((b, hq, s, d), dtype=q.dtype)
    items, isz = b * hkv, q.itemsize
    n = max(1, min(_MAX_CAUSAL_CHUNKS, s // CAUSAL_CHUNK_ROWS))
    bounds = [s * c // n for c in range(n + 1)]
    rows_max = max(bounds[c + 1] - bounds[c] for c in range(n))
    scores = cupy.empty(items * rows_max * s, dtype=q.dtype)
    for c in range(n):
        i0, i1 = bounds[c], bounds[c + 1]
        rows, keys = i1 - i0, i1
        for gi in range(g):
            # Q rows of head h = hk*G + gi: item (b, hk) at (b*Hkv + hk) * G * S * D.
            q_ptr = q.data.ptr + ((gi * s) + i0) * d * isz
            y_ptr = y.data.ptr + ((gi * s) + i0) * d * isz
            cublas.matmul_batched(q_ptr, d, g * s * d, False, k.data.ptr, d, s * d, True,
                                  scores.data.ptr, keys, rows * keys, rows, keys, d, items,
                                  q.dtype, alpha=scale)
            view = scores[:items * rows * keys]
            softmax_rows(view.reshape(items * rows, keys), causal=True, s_q=rows, offset=i0,
                         out=view.reshape(items * rows, keys))
            cublas.matmul_batched(scores.data.ptr, keys, rows * keys, False, v.data.ptr, d,
                                  s * d, False, y_ptr, d, g * s * d, rows, d, keys, items,
                                  q.dtype)
    return y


def matmul(layer, inputs, rt) -> list | None:
    """MatMul on direct cuBLAS calls (capturable), for the shapes models use.

    * (..., M, K) @ (K, N): one 2-D GEMM over the flattened rows (CuPy's batched path for a
      3-D left operand runs ~10x slower than one 2-D GEMM on H100); up to
      :data:`gemv.MAX_ROWS` rows against a weight stored (N, K), the decode GEMV
      (:mod:`.gemv`).
    * (..., M, K) @ (..., K, N) with equal, evenly strided batch dims: one strided-batched
      GEMM.

    Anything else (1-D operands, broadcasting batch dims, mixed dtypes) returns None and
    runs ``cupy.matmul``, which cannot be captured. Timed alternatives are the cuBLASLt
    tactics (:mod:`dist_rt.runtime.cuda.tactics`).
    """
    a, b = inputs
    if a.dtype != b.dtype or cublas.cuda_type(a.dtype) is None or a.ndim < 2 or b.ndim < 2:
        return None
    if b.ndim == 2:
        if a.ndim > 2 and not a.flags.c_contiguous:
            a = cupy.ascontiguousarray(a)
        a2 = a.reshape(-1, a.shape[-1])
        # The decode GEMV declines (None) above gemv.MAX_ROWS rows or for another layout.
        y = gemv.gemv(a2, b, prefetch=l2_prefetch.lookup(layer, rt))
        if y is None:
            y = cublas.matmul2d(a2, b)
        return [y.reshape(*a.shape[:-1], b.shape[1])]
    if a.shape[:-2] != b.shape[:-2]:
        return None
    a, b = (x if x.flags.c_contiguous else cupy.ascontiguousarray(x) for x in (a, b))
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = a.size // max(m * k, 1) if a.size else int(np.prod(a.shape[:-2]))
    y = cupy.empty((*a.shape[:-1], n), dtype=a.dtype)
    if y.size and k == 0:
        y.fill(0)
    elif y.size:
        cublas.matmul_batched(a.data.ptr, k, m * k, False, b.data.ptr, n, k * n, False,
                              y.data.ptr, n, m * n, m, n, k, batch, a.dtype)
    return [y]


def split(layer, inputs, rt) -> list | None:
    """Split as views of its input: no copy kernels (the generic op copies every part).

    Merged projections (``builder/passes/fuse_parallel_matmul.py``) end in a Split whose
    readers (Reshape/Transpose views, RoPE, Attention, MatMul) take strided input, so
    copying the parts would give back the launches the merge saved. Readers that need
    contiguous input copy it themselves.
    """
    from dist_rt.ops.split import Split, split_sizes  # noqa: PLC0415 - ops import nothing here

    x = inputs[0]
    if x.ndim == 0:
        return None
    axis = int(layer.attr("axis", 0)) % x.ndim
    sizes, _ = Split._sizes(layer, inputs, host=True)
    outs, start = [], 0
    for size in split_sizes(layer, x.shape[axis], sizes, len(layer.outputs)):
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + size)
        outs.append(x[tuple(index)])
        start += size
    return outs


def gather(layer, inputs, rt) -> list | None:
    """Gather without the host-side bounds check, used only while a graph is captured.

    The generic op checks index bounds with a device-to-host copy, which a capture forbids;
    the eager run of the same shapes, made right before capturing, has checked them.
    Out-of-range indices fed to later replays wrap instead of raising.
    """
    data, idx = inputs
    if not cupy.cuda.get_current_stream().is_capturing() or not isinstance(idx, cupy.ndarray):
        return None
    axis = int(layer.attr("axis", 0)) % data.ndim
    n = data.shape[axis]
    idx = idx.astype(np.int64, copy=False)
    return [cupy.take(data, cupy.where(idx < 0, idx + n, idx), axis=axis)]


#: (domain, op type) -> fused wrapper.
REGISTRY: dict[tuple[str, str], Callable[..., list | None]] = {
    ("", "RMSNormalization"): rmsnorm,
    ("dist_rt", "AddRMSNorm"): add_rmsnorm,
    ("dist_rt", "AllReduceAddRMSNorm"): collective_norm.all_reduce_add_rmsnorm,
    ("", "Softmax"): softmax,
    ("dist_rt", "Silu"): silu,
    ("dist_rt", "SiluMul"): silu_mul,
    ("dist_rt", "Attention"): attention,
    ("dist_rt", "RotaryHalf"): rope_half,
    ("dist_rt", "RotaryHalfPair"): rope_half_pair,
    ("", "MatMul"): matmul,
    ("", "Split"): split,
    ("", "Transpose"): transpose,
    ("", "Gather"): gather,
    ("dist_rt", "WeightOnlyMatMul"): w8.weight_only_matmul,
    ("dist_rt", "MatMulCast"): matmul_cast.matmul_cast,
    ("dist_rt", "MatMulSiluMul"): matmul_silu.matmul_silu_mul,
}


def lookup(layer) -> Callable[..., list | None] | None:
    """The fused wrapper of ``layer``, or None for the generic op."""
    domain = "" if layer.domain in ("", "ai.onnx") else layer.domain
    return REGISTRY.get((domain, layer.op_type))

"""Fused CUDA kernels for hot ops, behind a small explicit registry.

``lookup(layer)`` returns the kernel wrapper for a layer, or None when the generic op (its
``_run`` through ``rt.xp = cupy``) should run. A wrapper may still decline at run time by
returning None (an unsupported dtype, a broadcast it does not handle...); the backend then
runs the generic op, so a fused kernel never changes what is computed, only how fast.

Registry (domain, op type) -> wrapper:

=========================  =========================================================
``RMSNormalization``       ``rmsnorm`` kernel (last axis, weight of the same dtype)
``Softmax`` (opset >= 13)  ``softmax`` kernel (last axis)
``dist_rt::Silu``          ``silu`` kernel
``dist_rt::SiluMul``       ``silu_mul`` kernel (A and B of the same shape)
``dist_rt::Attention``     S <= 16 and D <= 128: ``attention_decode`` (flash-style);
                           else cuBLAS q k^T -> fused scale/causal softmax -> cuBLAS P v
``MatMul``                 (..., K) @ (K, N) as one flattened 2-D cuBLAS GEMM
``Gather``                 while capturing a graph: no host bounds check (see gather)
=========================  =========================================================

Attention's long-query path materializes the scores (B, Hq, S, Skv) in the input dtype:
cuBLAS tensor cores do both products with float32 accumulation, and the softmax kernel
reads and writes the scores once. A tensor-core flash kernel would avoid that traffic; it is
the next step (issue 5), not done here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import cupy
import numpy as np

from dist_rt import dtypes
from dist_rt.runtime.cuda.source import ATTENTION_WARPS, MAX_HEAD_DIM, SOURCE, TEMPLATES, TYPES

_MODULE: cupy.RawModule | None = None
#: Query lengths up to this use the flash-style kernel; longer ones the cuBLAS path.
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


def _fn(template: str, dtype: Any) -> Any:
    return _module().get_function(f"{template}<{_type_of(dtype)}>")


def _row_threads(cols: int) -> int:
    return int(min(1024, max(32, 1 << math.ceil(math.log2(max(cols, 1)) - 2))))


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
    return [_elementwise("silu_mul", [cupy.ascontiguousarray(a), cupy.ascontiguousarray(b)])]


def _elem_strides(x) -> tuple[int, ...]:
    return tuple(s // x.itemsize for s in x.strides)


def attention(layer, inputs, rt) -> list | None:
    """dist_rt::Attention without a mask input (causal or not), GQA by head mapping.

    Returns Y (B, Hq, S, D) as a transposed view of a (B, S, Hq, D) buffer, so the exporter's
    following ``Transpose(0, 2, 1, 3) -> Reshape`` costs no copy.
    """
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
    if s <= DECODE_MAX_QUERIES and d <= MAX_HEAD_DIM:
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
        return [y.transpose(0, 2, 1, 3)]
    # Long queries: (B, Hkv, G*S, D) @ (B, Hkv, D, Skv) on tensor cores, then softmax.
    if _type_of(q.dtype) == TYPES["bfloat16"]:
        q, k, v = (x.astype(np.float32) for x in (q, k, v))  # cuBLAS via CuPy lacks bf16
    qg = cupy.ascontiguousarray(q).reshape(b, hkv, g * s, d)
    scores = cupy.matmul(qg, k.swapaxes(-1, -2))
    softmax_rows(scores, scale=scale, causal=bool(causal), s_q=s, offset=skv - s, out=scores)
    y = cupy.matmul(scores, v).astype(inputs[0].dtype, copy=False)
    return [y.reshape(b, hq, s, d)]


def matmul(layer, inputs, rt) -> list | None:
    """(..., M, K) @ (K, N) as one 2-D GEMM over the flattened rows (no batched GEMM)."""
    a, b = inputs
    if b.ndim != 2 or a.ndim < 3 or a.dtype != b.dtype or not a.flags.c_contiguous:
        return None
    if _type_of(a.dtype) not in (TYPES["float32"], TYPES["float16"]):
        return None
    y = cupy.matmul(a.reshape(-1, a.shape[-1]), b)
    return [y.reshape(*a.shape[:-1], b.shape[1])]


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
    ("", "Softmax"): softmax,
    ("dist_rt", "Silu"): silu,
    ("dist_rt", "SiluMul"): silu_mul,
    ("dist_rt", "Attention"): attention,
    ("", "MatMul"): matmul,
    ("", "Gather"): gather,
}


def lookup(layer) -> Callable[..., list | None] | None:
    """The fused wrapper of ``layer``, or None for the generic op."""
    domain = "" if layer.domain in ("", "ai.onnx") else layer.domain
    return REGISTRY.get((domain, layer.op_type))

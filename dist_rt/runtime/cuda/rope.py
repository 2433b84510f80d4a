"""CUDA wrappers of the RoPE ops: dist_rt::RotaryHalf and dist_rt::RotaryHalfPair.

``rope_half`` rotates one (B, H, S, D) operand with (1, ..., 1, S, D) cos/sin tables in one
launch (``rope_half_vec`` on 16-byte vectors where it applies, else the scalar
``rope_half``). ``rope_half_pair`` rotates q and k of one cos/sin: one ``rope_half_pair_vec``
launch when both operands take the vector path, else ``rope_half`` for each (two launches).
At one decode token these launches are pure latency, which is why the pair exists (see
``builder/passes/fuse_rope_pair.py``).

q and k are often strided views (the merged QKV GEMM's Split, then Reshape/Transpose views,
see :func:`dist_rt.runtime.cuda.kernels.split`): the kernels read them in place as long as
the last dim is contiguous, and write contiguous outputs.

Kept apart from ``kernels.py`` for its length only: kernels lists both wrappers in its
registry and owns the compiled module, so this module reaches ``kernels`` at call time
(kernels imports this one).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import cupy
import numpy as np

_KERNELS: ModuleType | None = None


def _kernels() -> ModuleType:
    """The ``kernels`` module (its compiled module, launch config), imported at first use."""
    global _KERNELS
    if _KERNELS is None:
        from dist_rt.runtime.cuda import kernels  # noqa: PLC0415 - kernels imports us

        _KERNELS = kernels
    return _KERNELS


def _operands(x, cos, sin) -> tuple[Any, Any, Any] | None:
    """``(x, cos, sin)`` as the kernels read them, or None where the generic op must run.

    The kernels take x (B, H, S, D) of a supported dtype and even D, with the last dim
    contiguous (else x is copied), and cos/sin of x's dtype and one shape (1, ..., 1, S, D),
    made contiguous (no copy when they are already).
    """
    if (_kernels()._type_of(x.dtype) is None or x.ndim != 4 or cos.dtype != x.dtype
            or sin.dtype != x.dtype or cos.shape != sin.shape or cos.ndim < 2
            or cos.shape[-2:] != x.shape[-2:] or any(n != 1 for n in cos.shape[:-2])
            or x.shape[-1] % 2):
        return None
    if x.strides[-1] != x.itemsize:
        x = cupy.ascontiguousarray(x)
    return x, cupy.ascontiguousarray(cos), cupy.ascontiguousarray(sin)


def _row_strides(x) -> tuple[int, ...]:
    """Element strides of x's dims b, h, s."""
    return _kernels()._elem_strides(x)[:3]


def _vec_ok(x, cos, sin) -> bool:
    """True when ``rope_half_vec`` applies to prepared operands: D/2 and the b, h, s strides
    whole 16-byte vectors, every pointer 16-byte aligned."""
    vec = 16 // x.itemsize
    return ((x.shape[-1] // 2) % vec == 0 and all(v % vec == 0 for v in _row_strides(x))
            and all(t.data.ptr % 16 == 0 for t in (x, cos, sin)))


def _rotate(x, cos, sin) -> Any:
    """RotaryHalf of prepared operands (see :func:`_operands`) in one launch; y contiguous."""
    k = _kernels()
    y = cupy.empty(x.shape, dtype=x.dtype)
    n = y.size
    if not n:
        return y
    _, h, s, d = x.shape
    strides = _row_strides(x)
    if _vec_ok(x, cos, sin):
        # A thread rotates matching 16-byte vectors of both halves: the scalar kernel read
        # strided 2-byte elements at ~0.5 TB/s (H100, 8x2048).
        items = n // (16 // x.itemsize) // 2
        blocks = int(min(65535, (items + k._THREADS - 1) // k._THREADS))
        k._fn("rope_half_vec", x.dtype)((blocks,), (k._THREADS,),
                                        (x, cos, sin, y, np.int32(h), np.int32(s), np.int32(d),
                                         *(np.int64(v) for v in strides), np.int64(items)))
        return y
    blocks = int(min(65535, (n + k._THREADS - 1) // k._THREADS))
    k._fn("rope_half", x.dtype)((blocks,), (k._THREADS,),
                                (x, cos, sin, y, np.int32(h), np.int32(s), np.int32(d),
                                 *(np.int64(v) for v in strides), np.int64(n)))
    return y


def rope_half(layer: Any, inputs: list, rt: Any) -> list | None:
    """dist_rt::RotaryHalf with x (B, H, S, D) and cos/sin (..., S, D) of leading ones.

    Args:
        layer: The RotaryHalf layer.
        inputs: x, cos, sin (device arrays; x may be a strided view).
        rt: The run context (unused: the kernels run on CuPy's current stream).

    Returns:
        ``[Y]`` contiguous, or None for the generic op (see :func:`_operands`).
    """
    ready = _operands(*inputs)
    return None if ready is None else [_rotate(*ready)]


def rope_half_pair(layer: Any, inputs: list, rt: Any) -> list | None:
    """dist_rt::RotaryHalfPair: q and k rotated by one cos/sin, in one launch where it can.

    ``rope_half_pair_vec`` covers both when each meets :func:`rope_half`'s vector-path
    conditions (items ``[0, items_q)`` rotate q, the rest k); otherwise each operand runs
    :func:`rope_half`'s path. The generic op runs (None) when either operand is one
    :func:`rope_half` would decline.

    Args:
        layer: The RotaryHalfPair layer.
        inputs: q (B, Hq, S, D), k (B, Hk, S, D), cos, sin (device arrays; q and k may be
            strided views).
        rt: The run context (unused: the kernels run on CuPy's current stream).

    Returns:
        ``[Q', K']`` contiguous, or None for the generic op.
    """
    q, k, cos, sin = inputs
    ready = _operands(q, cos, sin)
    if ready is None:
        return None
    q, cos, sin = ready
    ready = _operands(k, cos, sin)  # cos/sin are contiguous now: not copied twice
    if ready is None:
        return None
    k = ready[0]
    if not (q.size and k.size and _vec_ok(q, cos, sin) and _vec_ok(k, cos, sin)):
        return [_rotate(q, cos, sin), _rotate(k, cos, sin)]
    kern = _kernels()
    yq, yk = cupy.empty(q.shape, dtype=q.dtype), cupy.empty(k.shape, dtype=k.dtype)
    vec = 16 // q.itemsize
    items_q = q.size // vec // 2
    items = items_q + k.size // vec // 2
    blocks = int(min(65535, (items + kern._THREADS - 1) // kern._THREADS))
    _, hq, s, d = q.shape
    kern._fn("rope_half_pair_vec", q.dtype)(
        (blocks,), (kern._THREADS,),
        (q, k, cos, sin, yq, yk, np.int32(hq), np.int32(k.shape[1]), np.int32(s), np.int32(d),
         *(np.int64(v) for v in _row_strides(q)), *(np.int64(v) for v in _row_strides(k)),
         np.int64(items_q), np.int64(items)))
    return [yq, yk]

"""Tensor maps for the Tensor Memory Accelerator (TMA, sm_90+), in device memory.

A tensor map is a 128-byte descriptor of a strided tensor in global memory and of the box a
``cp.async.bulk.tensor`` instruction copies into shared memory (with the 128-byte swizzle
wgmma reads). The driver encodes it (``cuTensorMapEncodeTiled``, called through ctypes:
CuPy does not wrap it); kernels read it from global memory by address, so no 128-byte
kernel parameter is needed.

:func:`device_maps` keeps the uploaded maps of recent (pointer, shape, strides) keys: a
CUDA graph replays the same buffers, so its kernels find their maps uploaded by the
warm-up run (a map used during a capture is pinned: never evicted). While the current
stream is capturing, a key not seen before returns None
(uploading would put a host-to-device copy of pageable memory into the graph); the caller
then takes a path without TMA.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import cupy
import numpy as np

#: ``CUtensorMapDataType``: every 16-bit type moves as UINT16 (out-of-bounds elements are
#: zero bits, which is 0.0 in fp16 and bf16 alike).
_UINT16 = 1
_INTERLEAVE_NONE = 0
_SWIZZLE_128B = 3
_L2_PROMOTION_256B = 3
_OOB_FILL_ZERO = 0
MAP_BYTES = 128
#: Most key sets kept (each holds a few 128-byte maps in device memory).
CACHE_SIZE = 256

_ENCODE: Any = None
_CACHE: OrderedDict[tuple, Any] = OrderedDict()
#: Maps a captured graph reads: kept for the life of the process.
_PINNED: dict[tuple, Any] = {}


class TmaError(RuntimeError):
    """The driver refused to encode a tensor map (its CUresult is in the message)."""


def _encode_fn() -> Any:
    global _ENCODE
    if _ENCODE is None:
        fn = ctypes.CDLL("libcuda.so.1").cuTensorMapEncodeTiled
        u32p, u64p = ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint64)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p, u64p,
                       u64p, u32p, u32p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int]
        fn.restype = ctypes.c_int
        _ENCODE = fn
    return _ENCODE


def encode_16bit(x, box: Sequence[int]) -> np.ndarray:
    """The tensor map (128 bytes) of a 16-bit device array with a contiguous last dim.

    Dims are taken innermost first (the last axis of ``x`` is TMA dim 0); ``box`` gives the
    box extent per dim in the same order, its first entry at most 64 (128 bytes, the
    swizzle span). A size-1 axis gets a stride of the axis inside it times its size, so
    every stride is a multiple of 16 bytes whatever the array's own stride there.

    Raises:
        TmaError: the layout does not fit TMA (strides or base not 16-byte aligned) or the
            driver refused the map.
    """
    if x.itemsize != 2 or x.strides[-1] != 2:
        raise TmaError(f"tensor map: expected a 16-bit array with a contiguous last dim, got "
                       f"{x.dtype} with strides {x.strides}")
    dims = [int(n) for n in reversed(x.shape)]
    strides: list[int] = []
    inner = 2 * dims[0]
    for n, st in zip(reversed(x.shape[:-1]), reversed(x.strides[:-1]), strict=True):
        st = int(st) if n > 1 else inner
        strides.append(st)
        inner = st * int(n)
    if x.data.ptr % 16 or any(st % 16 for st in strides):
        raise TmaError(f"tensor map: base {x.data.ptr:#x} and strides {x.strides} must be "
                       f"multiples of 16 bytes")
    out = np.zeros(MAP_BYTES // 8, np.uint64)
    rank = len(dims)
    res = _encode_fn()(
        out.ctypes.data, _UINT16, rank, ctypes.c_void_p(x.data.ptr),
        (ctypes.c_uint64 * rank)(*dims), (ctypes.c_uint64 * max(rank - 1, 1))(*strides),
        (ctypes.c_uint32 * rank)(*box), (ctypes.c_uint32 * rank)(*([1] * rank)),
        _INTERLEAVE_NONE, _SWIZZLE_128B, _L2_PROMOTION_256B, _OOB_FILL_ZERO)
    if res != 0:
        raise TmaError(f"cuTensorMapEncodeTiled returned CUresult {res} for shape {x.shape}, "
                       f"strides {x.strides}, box {tuple(box)}")
    return out


def device_maps(arrays: Sequence[Any], boxes: Sequence[Sequence[int]]) -> Any | None:
    """One device buffer holding the tensor maps of ``arrays`` (128 bytes each, in order),
    or None while the current stream captures a graph and these maps were never uploaded.

    Raises:
        TmaError: as :func:`encode_16bit`.
    """
    key = (cupy.cuda.Device().id,
           *((a.data.ptr, a.shape, a.strides, tuple(bx)) for a, bx in zip(arrays, boxes,
                                                                           strict=True)))
    capturing = cupy.cuda.get_current_stream().is_capturing()
    buf = _PINNED.get(key)
    if buf is not None:
        return buf
    buf = _CACHE.get(key)
    if buf is not None:
        if capturing:  # a graph will read it on every replay: never evict it
            _PINNED[key] = _CACHE.pop(key)
        else:
            _CACHE.move_to_end(key)
        return buf
    if capturing:
        return None
    host = np.concatenate([encode_16bit(a, bx) for a, bx in zip(arrays, boxes, strict=True)])
    buf = cupy.asarray(host)
    cupy.cuda.get_current_stream().synchronize()  # uploaded before any kernel reads it
    _CACHE[key] = buf
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return buf

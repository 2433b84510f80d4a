"""Properties of the current CUDA device that kernel launch rules read, cached per device.

One place for them: the int8 GEMV (``w8.py``: how many K splits fill the GPU) and the flash
attention variant choice (``flash.py``: whether one wave of CTAs fills it) both size their
grids by the SM count; flash (sm_80+) and programmatic dependent launch (``launch.py``,
sm_90+) read the compute capability.
"""

from __future__ import annotations

import cupy

_SM_COUNT: dict[int, int] = {}
_CAPABILITY: dict[int, int] = {}


def sm_count() -> int:
    """Streaming multiprocessors of the current device (asked once per device)."""
    dev = cupy.cuda.runtime.getDevice()
    if dev not in _SM_COUNT:
        _SM_COUNT[dev] = int(cupy.cuda.runtime.getDeviceProperties(dev)["multiProcessorCount"])
    return _SM_COUNT[dev]


def capability() -> int:
    """Compute capability of the current device as ``10 * major + minor`` (90 for H100)."""
    dev = cupy.cuda.runtime.getDevice()
    if dev not in _CAPABILITY:
        _CAPABILITY[dev] = int(cupy.cuda.Device(dev).compute_capability)
    return _CAPABILITY[dev]

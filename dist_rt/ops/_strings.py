"""Shared helpers of the string ops: ONNX strings are host NumPy object arrays of ``str``.

No device has string arrays, so these ops run on the host on every backend (CuPy has no
object dtype); their inputs and outputs stay NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STRING = np.dtype(object)


def host_strings(value: Any) -> np.ndarray:
    """``value`` as a host object array of ``str``."""
    array = np.asarray(value, dtype=object)
    return array


def strings_like(shape: tuple[int, ...], items: list[str]) -> np.ndarray:
    """An object array of ``shape`` holding ``items`` (row-major)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)

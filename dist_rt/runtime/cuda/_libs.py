"""What the two ctypes cuBLAS bindings (``cublas.py``, ``cublaslt.py``) share; no CuPy import
(CPU tests use it).

* Finding the library: binding to the very ``libcublas``/``libcublasLt`` mapped into the
  process keeps our calls on the same library version as CuPy's own, whatever the loader
  path says.
* The enums both pass, status checks, and the row-major operand rules (a 2-D view whose
  rows are contiguous goes to cuBLAS as it is, with its row stride as leading dimension).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import ExecutionError

#: cudaDataType_t per NumPy dtype name (library_types.h: CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF).
CUDA_TYPES = {"float32": 0, "float16": 2, "bfloat16": 14}
COMPUTE_32F = 68   # cublasComputeType_t CUBLAS_COMPUTE_32F
OP_N, OP_T = 0, 1  # cublasOperation_t


def mapped(prefix: str) -> list[str]:
    """Paths of the shared objects named ``prefix*`` mapped into this process (Linux)."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if os.path.basename(path).startswith(prefix) and path not in paths:
                    paths.append(path)
    except OSError:
        pass  # not Linux: the loader's search
    return paths


def open_first(candidates: Sequence[str], loader_name: str, symbol: str,
               what: str) -> ctypes.CDLL:
    """The first of ``candidates`` (then ``ctypes.util.find_library(loader_name)``) that
    loads and exports ``symbol``.

    Raises:
        ExecutionError: None does; names every candidate and why.
    """
    names = list(candidates)
    found = ctypes.util.find_library(loader_name)
    if found:
        names.append(found)
    errors = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            getattr(lib, symbol)  # raises AttributeError when absent
            return lib
        except (OSError, AttributeError) as exc:
            errors.append(f"{name}: {exc}")
    raise ExecutionError(f"{what} not found: " + "; ".join(errors))


def check(status: int, what: str) -> None:
    """Raise ExecutionError naming ``what`` when a cuBLAS(Lt) call returned a non-zero status."""
    if status != 0:
        raise ExecutionError(f"{what} failed with cuBLAS status {status}")


def cuda_type(dtype: Any) -> int | None:
    """cudaDataType_t of a NumPy dtype, or None when these GEMMs do not take it."""
    dt = np.dtype(dtype)
    return CUDA_TYPES["bfloat16"] if dt == dtypes.bfloat16 else CUDA_TYPES.get(dt.name)


def ld(x: Any) -> int:
    """Leading dimension (elements between rows) of a 2-D row-major view."""
    return max(x.strides[0] // x.itemsize, x.shape[1], 1)


def row_major(x: Any) -> bool:
    """True for a 2-D view whose rows are contiguous and do not overlap."""
    return x.ndim == 2 and (x.shape[1] <= 1 or x.strides[1] == x.itemsize) and \
        (x.shape[0] <= 1 or x.strides[0] >= x.shape[1] * x.itemsize)


def b_operand(b: Any, trans_b: bool) -> tuple[Any, bool]:
    """``(b, trans_b)`` with a column-major B read as its row-major transpose.

    The CUDA backend stores MatMul weights (N, K) and hands layers their (K, N) ``.T`` view
    (see :mod:`dist_rt.runtime.cuda.gemv`); cuBLAS takes that as the transposed operand
    instead of copying it row-major.
    """
    if b.ndim == 2 and not row_major(b) and row_major(b.T):
        return b.T, not trans_b
    return b, trans_b

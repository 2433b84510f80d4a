"""Finding the CUDA math libraries CuPy already loaded (no CuPy import: CPU tests use it).

Binding to the very ``libcublas``/``libcublasLt`` mapped into the process keeps our ctypes
calls on the same library version as CuPy's own, whatever the loader path says.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Sequence

from dist_rt.errors import ExecutionError


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

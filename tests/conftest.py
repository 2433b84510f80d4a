"""Shared pytest setup: GPU markers skip without a GPU; the repo root is importable."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TESTS = os.path.dirname(os.path.abspath(__file__))
# Test modules are imported by path (--import-mode=importlib, so equal basenames in two
# folders do not clash); their shared helpers (mpi_util, node_harness, _builder_nets...) are
# found through sys.path instead.
for _dir in [TESTS] + sorted(
        os.path.join(TESTS, d) for d in os.listdir(TESTS)
        if os.path.isdir(os.path.join(TESTS, d)) and not d.startswith((".", "_"))):
    if _dir not in sys.path:
        sys.path.insert(0, _dir)


def _gpu_count() -> int:
    try:
        import cupy  # noqa: PLC0415 - optional, only where CUDA is present

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - any failure means "no usable GPU"
        return 0


def pytest_collection_modifyitems(config, items):
    gpus = None
    for item in items:
        need = 2 if "multigpu" in item.keywords else 1 if "gpu" in item.keywords else 0
        if not need:
            continue
        if gpus is None:
            gpus = _gpu_count()
        if gpus < need:
            item.add_marker(pytest.mark.skip(reason=f"needs {need} CUDA GPU(s), found {gpus}"))

"""The CPU backend: NumPy arrays, every layer through its op's reference implementation.

A layer whose build recorded a tactic (``layer.metadata["tactic"]``, chosen by timing; see
:mod:`dist_rt.builder.tactics`) runs that implementation instead; it computes the same values.

Activations are ordinary NumPy allocations freed after their last use; the build-time arena
plan is reported (and used by the CUDA backend) but NumPy's allocator already reuses freed
blocks, so carving one arena by hand would not save memory here.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Any

import numpy as np

from dist_rt.builder import tactics
from dist_rt.ops import RunContext

name = "cpu"
xp = np


def to_device(array: np.ndarray) -> np.ndarray:
    """Host arrays are device arrays on the CPU: identity."""
    return array


def to_host(array: Any) -> np.ndarray:
    """Identity for NumPy arrays (anything array-like is converted)."""
    return np.asarray(array)


def run_layer(layer: Any, inputs: Sequence[Any], rt: RunContext) -> list[Any]:
    """Run one layer: its recorded tactic, else its op's NumPy reference implementation."""
    name = layer.metadata.get("tactic")
    if name is not None and name != tactics.DEFAULT:
        out = tactics.run_tactic("cpu", layer, name, inputs, rt)
        if out is not None:  # None: the tactic declined these inputs (other shapes)
            return out
    return layer.op.run(layer, inputs, rt)


def device_arch() -> str:
    """The machine architecture (``x86_64``, ``aarch64``...)."""
    return platform.machine() or "unknown"

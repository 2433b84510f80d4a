"""Host RSS stays flat over many execute calls and engine create/destroy cycles."""

from __future__ import annotations

import gc
import os

import numpy as np
from _fuzz_common import base_bytes

from dist_rt import Builder, BuilderConfig, parse_onnx


def rss_mib() -> float:
    """Resident set size of this process in MiB (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def execute_growth(calls: int) -> float:
    """RSS growth (MiB) over ``calls`` executes after a warmup of 200."""
    engine = Builder(BuilderConfig(device="cpu")).build(parse_onnx(base_bytes(0)))
    x = {"x": np.ones((2, 8), np.float32)}
    with engine.create_execution_context() as ctx:
        for _ in range(200):
            ctx.execute(x)
        gc.collect()
        before = rss_mib()
        for _ in range(calls):
            ctx.execute(x)
        gc.collect()
        return rss_mib() - before


def cycle_growth(cycles: int) -> float:
    """RSS growth (MiB) over ``cycles`` parse+build+context+execute+close cycles."""
    data = base_bytes(0)
    x = {"x": np.ones((2, 8), np.float32)}

    def once():
        engine = Builder(BuilderConfig(device="cpu")).build(parse_onnx(data))
        with engine.create_execution_context() as ctx:
            ctx.execute(x)

    for _ in range(5):
        once()
    gc.collect()
    before = rss_mib()
    for _ in range(cycles):
        once()
    gc.collect()
    return rss_mib() - before


def test_execute_does_not_leak():
    assert execute_growth(2000) < 4.0


def test_engine_cycles_do_not_leak():
    assert cycle_growth(30) < 8.0

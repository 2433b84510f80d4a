"""Host memory stays flat over many execute calls and engine create/destroy cycles.

RSS is measured in a fresh interpreter: in the pytest process the heap already carries
thousands of earlier tests' garbage, and one CI run saw a 10 MiB one-off jump in a 2,000-call
window that a fresh process (and this test's own process, rerun) never shows. A leak grows in
every window, a heap that settles does not, so the RSS check takes the smaller of two windows.
tracemalloc's count of Python and NumPy allocations is exact and runs in-process.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
from _fuzz_common import base_bytes

from dist_rt import Builder, BuilderConfig, parse_onnx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def rss_mib() -> float:
    """Resident set size of this process in MiB (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _warm_context():
    """A CPU context of the base model and its feed, after a warmup of 200 executes."""
    engine = Builder(BuilderConfig(device="cpu")).build(parse_onnx(base_bytes(0)))
    ctx, x = engine.create_execution_context(), {"x": np.ones((2, 8), np.float32)}
    for _ in range(200):
        ctx.execute(x)
    return ctx, x


def execute_growth(calls: int, windows: int = 2) -> float:
    """Smallest RSS growth (MiB) over ``windows`` runs of ``calls`` executes, after 200."""
    ctx, x = _warm_context()
    with ctx:
        growth = []
        for _ in range(windows):
            gc.collect()
            before = rss_mib()
            for _ in range(calls):
                ctx.execute(x)
            gc.collect()
            growth.append(rss_mib() - before)
        return min(growth)


def execute_traced_growth(calls: int) -> int:
    """Bytes still allocated (tracemalloc) after ``calls`` executes, after a warmup of 200."""
    ctx, x = _warm_context()
    with ctx:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(calls):
                ctx.execute(x)
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()


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


def _fresh(kind: str, count: int) -> float:
    """Run ``execute_growth`` or ``cycle_growth`` in a new interpreter; its MiB figure."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), kind, str(count)],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["mib"]


def test_execute_does_not_leak():
    assert _fresh("execute", 2000) < 4.0


def test_execute_allocations_are_freed():
    # Measured: 32 bytes when clean; keeping one bare object() a call adds 50 KB.
    assert execute_traced_growth(2000) < 16 * 1024


def test_engine_cycles_do_not_leak():
    assert _fresh("cycle", 30) < 8.0


if __name__ == "__main__":
    kind, count = sys.argv[1], int(sys.argv[2])
    mib = execute_growth(count) if kind == "execute" else cycle_growth(count)
    print(json.dumps({"mib": mib}))

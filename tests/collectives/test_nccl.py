"""NcclCommunicator on real GPUs: one GPU in-process, and N GPUs via ``python -m launch``.

Skipped without CUDA (tests/conftest.py). The multi-GPU matrix compares every collective x
reduce op x dtype x axis x group with NumPy, and captures collectives into a CUDA graph.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "collectives", "nccl_worker.py")


def _ngpu() -> int:
    import cupy  # noqa: PLC0415 - only on GPU machines

    return min(4, cupy.cuda.runtime.getDeviceCount())


def _spawn(n, args, timeout, env=None):
    full = dict(os.environ, PYTHONPATH=ROOT, NCCL_NVLS_ENABLE="0", **(env or {}))
    try:
        return subprocess.run([sys.executable, "-m", "launch", "-n", str(n), *args], cwd=ROOT,
                              env=full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} did not finish in {timeout} s (hang?)\nstdout: {exc.stdout}\n"
                    f"stderr: {exc.stderr}")


class _Solo:
    """Side channel of a one-rank world (no MPI needed in the pytest process)."""

    def broadcast_object(self, obj, root=0, group=None):
        return obj

    def all_gather_object(self, obj):
        return [obj]

    def abort(self, reason="", code=1):
        raise RuntimeError(reason)

    def close(self):
        pass


@pytest.mark.gpu
def test_single_gpu_identity_and_graph():
    import cupy as cp  # noqa: PLC0415

    from collectives.nccl import NcclCommunicator  # noqa: PLC0415
    from dist_rt.errors import CommunicatorError  # noqa: PLC0415
    from launch import RankInfo  # noqa: PLC0415

    comm = NcclCommunicator(RankInfo(0, 1, 0, 1, "single"), side=_Solo(), timeout=30)
    rng = np.random.default_rng()
    x_h = rng.standard_normal((3, 4, 5)).astype(np.float32)
    x = cp.asarray(x_h)
    for name, kw in [("all_reduce", {"op": "avg"}), ("all_gather", {"axis": 1}),
                     ("broadcast", {}), ("reduce", {"op": "max"}),
                     ("reduce_scatter", {"axis": 2}), ("all_to_all", {"axis": -1}),
                     ("gather", {"axis": 1}), ("scatter", {"axis": 0})]:
        np.testing.assert_allclose(cp.asnumpy(getattr(comm, name)(x, **kw)), x_h, rtol=1e-6)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        comm.all_gather(x, axis=1)
        stream.begin_capture()
        out = comm.all_gather(x, axis=1)
        graph = stream.end_capture()
        y_h = rng.standard_normal(x_h.shape).astype(np.float32)
        x[...] = cp.asarray(y_h)
        graph.launch(stream)
        stream.synchronize()
    np.testing.assert_array_equal(cp.asnumpy(out), y_h)
    with pytest.raises(CommunicatorError, match="expected a cupy.ndarray"):
        comm.all_reduce(x_h)
    comm.close()


@pytest.mark.multigpu
def test_matrix_all_gpus():
    n = _ngpu()
    proc = _spawn(n, [sys.executable, WORKER, "matrix"], timeout=300)
    found = re.findall(r"SUMMARY rank (\d+)/\d+ cases=(\d+) failures=(\d+)", proc.stdout)
    assert len(found) == n, proc.stdout + proc.stderr
    assert all(int(f) == 0 and int(c) > 100 for _, c, f in found), proc.stdout
    assert proc.returncode == 0, proc.stderr


@pytest.mark.multigpu
def test_stalled_peer_times_out():
    t0 = time.monotonic()
    proc = _spawn(2, [sys.executable, WORKER, "stall"], timeout=45,
                  env={"DIST_RT_COLLECTIVE_TIMEOUT": "5"})
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 60
    assert re.search(r"rank 0/2, all_reduce: collective did not finish in 5 s", proc.stderr), \
        proc.stderr


@pytest.mark.multigpu
def test_bench_nccl_graph(tmp_path):
    out = tmp_path / "b.json"
    proc = _spawn(_ngpu(), [sys.executable, "-m", "collectives.bench", "--backend", "nccl",
                            "--min-bytes", "1K", "--max-bytes", "1M", "--step-factor", "32",
                            "--graph", "--json", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(out.read_text())["records"]
    assert {r["op"] for r in records} >= {"all_reduce", "all_to_all", "gather", "scatter"}
    assert all(r["max_error"] == 0 for r in records)

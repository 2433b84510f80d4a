"""Mismatched engines and dead ranks under real ``mpiexec -n 2``: clear error, no hang."""

from __future__ import annotations

import time

import pytest
from mpi_util import run_mpi

WORKER = "tests/reliability/mpi_worker.py"
ENV = {"DIST_RT_COLLECTIVE_TIMEOUT": "30"}


def _run(mode: str, tmp_path) -> tuple:
    t0 = time.monotonic()
    proc = run_mpi(2, ["-W", "ignore", WORKER, mode, str(tmp_path)], timeout=90, env=ENV,
                   check=False)
    return proc, proc.stdout + proc.stderr, time.monotonic() - t0


def test_control_run_succeeds(tmp_path):
    proc, out, _ = _run("ok", tmp_path)
    assert proc.returncode == 0, out
    assert out.count(": OK") == 2


@pytest.mark.parametrize("mode, message, every_rank", [
    ("world", "communicator of 2 ranks does not fit", True),
    ("swap", "rank 1 holds engine rank 0 of 2", True),
    ("swap_checked", "is the engine of rank 0, expected rank 1", False),
    ("mixed", "rank(s) [1] hold engines of another plan", True),
])
def test_mismatch_fails_every_rank(tmp_path, mode, message, every_rank):
    proc, out, _ = _run(mode, tmp_path)
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    assert message in out, out
    if every_rank:
        assert out.count("dist_rt: error:") == 2, out


@pytest.mark.parametrize("mode", ["die_build", "die_execute"])
def test_dead_rank_ends_the_job(tmp_path, mode):
    proc, out, seconds = _run(mode, tmp_path)
    assert proc.returncode != 0, out
    assert seconds < 60, f"{mode}: the job took {seconds:.1f} s to end"
    assert "signal 9" in out or "Killed" in out or "abort" in out, out

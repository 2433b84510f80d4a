"""MpiCommunicator under real ``mpiexec``: the full matrix at 1-4 ranks, dead ranks, timeouts.

One ``mpiexec`` launch per world size runs the whole matrix (every collective x reduce op x
dtype x axis x group, see ``mpi_worker.py``) and prints a summary per rank; the test asserts
zero failures on every rank.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from mpi_util import run_mpi

from collectives import LocalCommunicator, create_communicator
from dist_rt.errors import CommunicatorError, LaunchError
from launch.discover import RankInfo

WORKER = "tests/collectives/mpi_worker.py"


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_matrix(n):
    proc = run_mpi(n, [WORKER, "matrix"], timeout=240, check=False)
    summaries = re.findall(r"SUMMARY rank (\d+)/(\d+) cases=(\d+) failures=(\d+)", proc.stdout)
    assert len(summaries) == n, f"expected {n} summaries\n{proc.stdout}\n{proc.stderr}"
    for _, size, cases, failures in summaries:
        assert int(size) == n
        assert int(cases) > 100
        assert int(failures) == 0, proc.stdout
    assert proc.returncode == 0, proc.stderr


def test_dead_rank_ends_job():
    """SIGKILL of rank 1 inside a loop of all_reduces: mpiexec exits non-zero within 60 s."""
    t0 = time.monotonic()
    proc = run_mpi(3, [WORKER, "die"], timeout=60, check=False)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 60


def test_collective_timeout_names_collective_and_rank():
    proc = run_mpi(2, [WORKER, "stall"], timeout=60, check=False,
                   env={"DIST_RT_COLLECTIVE_TIMEOUT": "2"})
    assert proc.returncode != 0
    assert re.search(r"dist_rt: abort: rank 0/2, all_reduce: collective did not finish in 2 s",
                     proc.stderr), proc.stderr


class TestFactory:
    def test_auto_single_is_local(self):
        comm = create_communicator("auto", RankInfo(0, 1, 0, 1, "single"))
        assert isinstance(comm, LocalCommunicator)
        x = np.random.default_rng().standard_normal((3, 4)).astype(np.float32)
        np.testing.assert_array_equal(comm.all_gather(x, axis=1), x)

    def test_unknown_backend(self):
        with pytest.raises(LaunchError, match="'gloo' is not one of"):
            create_communicator("gloo", RankInfo(0, 1, 0, 1, "single"))

    def test_local_with_many_ranks(self):
        with pytest.raises(LaunchError, match="serves one rank"):
            create_communicator("local", RankInfo(1, 4, 1, 4, "torchrun"))

    def test_local_checks_uneven_split(self):
        comm = LocalCommunicator()
        comm.size = 1
        with pytest.raises(CommunicatorError, match="reduce op 'mean'"):
            comm.all_reduce(np.ones(3), op="mean")

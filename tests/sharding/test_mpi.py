"""Sharded runs under real mpiexec equal the unsharded reference (one launch per N)."""

import pytest

from tests.mpi_util import run_mpi


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_sharded_equals_reference(n):
    proc = run_mpi(n, ["tests/sharding/mpi_worker.py"], timeout=240)
    assert "FAIL" not in proc.stdout
    assert proc.stdout.count("OK ") >= 2, proc.stdout

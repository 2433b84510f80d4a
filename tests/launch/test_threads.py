"""launch/threads.py: each rank's BLAS thread share (no MPI needed: RankInfo is data)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from launch.discover import RankInfo
from launch.threads import USER_THREAD_VARS, blas_threads, limit_blas_threads


def _info(local_size: int, world_size: int | None = None) -> RankInfo:
    return RankInfo(rank=0, world_size=world_size or local_size, local_rank=0,
                    local_size=local_size, source="mpich")


@pytest.mark.parametrize("cpus, local, want", [((8, 8), 4, 2),    # not bound: a share
                                                ((2, 2), 4, 1),    # more ranks than cores
                                                ((2, 8), 4, 2),    # bound by the launcher
                                                ((1, 8), 4, 1),
                                                ((16, 16), 3, 5)],  # uneven: floor
                         ids=["share", "oversubscribed", "bound", "bound_one", "uneven"])
def test_share(cpus, local, want):
    assert blas_threads(_info(local), env={}, cpus=cpus) == want


def test_single_process_and_user_settings_are_left_alone():
    assert blas_threads(_info(1), env={}, cpus=(8, 8)) is None
    assert blas_threads(_info(1, world_size=4), env={}, cpus=(8, 8)) is None  # one a node
    for var in USER_THREAD_VARS:
        assert blas_threads(_info(4), env={var: "3"}, cpus=(8, 8)) is None
    assert blas_threads(_info(4), env={"OMP_NUM_THREADS": " "}, cpus=(8, 8)) == 2  # blank


def test_limit_applies_and_says_so(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    np.ones((64, 64)) @ np.ones((64, 64))  # the BLAS is loaded
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()
              if p["user_api"] == "blas"]
    if not before:
        pytest.skip("threadpoolctl finds no BLAS pool in this NumPy")
    for var in USER_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("launch.threads.usable_cpus", lambda: (4, 4))
    try:
        note = limit_blas_threads(_info(4))
        assert note == "BLAS threads 1 a rank (4 ranks on this node)"
        assert all(p["num_threads"] == 1 for p in threadpoolctl.threadpool_info()
                   if p["user_api"] == "blas")
    finally:
        threadpoolctl.threadpool_limits(limits=max(before), user_api="blas")


def test_notes_without_a_change(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert limit_blas_threads(_info(4)) == "BLAS threads as set by OMP_NUM_THREADS"
    monkeypatch.delenv("OMP_NUM_THREADS")
    for var in USER_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    assert "one process on this node" in limit_blas_threads(_info(1))
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # not installed
    monkeypatch.setattr("launch.threads.usable_cpus", lambda: (8, 8))
    note = limit_blas_threads(_info(4))
    assert "threadpoolctl is not installed" in note and "OMP_NUM_THREADS=2" in note

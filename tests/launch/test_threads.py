"""launch/threads.py: each rank's BLAS thread share (no MPI needed: RankInfo is data)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from launch.discover import RankInfo
from launch.threads import USER_THREAD_VARS, blas_threads, cgroup_cpus, limit_blas_threads


def _info(local_size: int, world_size: int | None = None) -> RankInfo:
    return RankInfo(rank=0, world_size=world_size or local_size, local_rank=0,
                    local_size=local_size, source="mpich")


@pytest.mark.parametrize("cpus, quota, local, want", [
    ((8, 8), None, 4, 2),      # not bound: a share
    ((2, 2), None, 4, 1),      # more ranks than cores
    ((2, 8), None, 4, 2),      # bound by the launcher
    ((1, 8), None, 4, 1),
    ((16, 16), None, 3, 5),    # uneven: floor
    ((64, 64), 4.0, 2, 2),     # a container's quota, shared
    ((64, 64), 1.5, 2, 1),
    ((2, 64), 16.0, 4, 2),     # bound, and a quota larger than the binding
], ids=["share", "oversubscribed", "bound", "bound_one", "uneven", "quota", "quota_small",
        "bound_and_quota"])
def test_share(cpus, quota, local, want):
    assert blas_threads(_info(local), env={}, cpus=cpus, quota=quota) == want


@pytest.mark.parametrize("files, want", [
    ({"cpu.max": "200000 100000\n"}, 2.0),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu.max": "garbage"}, None),
    ({}, None),
], ids=["v2", "v2_unlimited", "v1", "v1_unlimited", "unreadable", "none"])
def test_cgroup_quota(tmp_path, files, want):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpus(str(tmp_path)) == want


def test_single_process_and_user_settings_are_left_alone():
    assert blas_threads(_info(1), env={}, cpus=(8, 8), quota=None) is None
    assert blas_threads(_info(1, world_size=4), env={}, cpus=(8, 8), quota=None) is None
    for var in USER_THREAD_VARS:
        assert blas_threads(_info(4), env={var: "3"}, cpus=(8, 8), quota=None) is None
    blank = {"OMP_NUM_THREADS": " "}
    assert blas_threads(_info(4), env=blank, cpus=(8, 8), quota=None) == 2


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
    monkeypatch.setattr("launch.threads.cgroup_cpus", lambda: None)  # this host's quota
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
    monkeypatch.setattr("launch.threads.cgroup_cpus", lambda: None)
    note = limit_blas_threads(_info(4))
    assert "threadpoolctl is not installed" in note and "OMP_NUM_THREADS=2" in note

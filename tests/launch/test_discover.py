"""launch.discover: the launcher variable matrix, precedence, and bad values."""

from __future__ import annotations

import pytest

from dist_rt.errors import LaunchError
from launch import RankInfo, discover

CASES = [
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8",
      "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
     RankInfo(3, 8, 1, 2, "openmpi")),
    ({"PMI_RANK": "2", "PMI_SIZE": "3", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "3"},
     RankInfo(2, 3, 2, 3, "mpich")),
    ({"PMI_RANK": "1", "PMI_SIZE": "2"}, RankInfo(1, 2, 1, 2, "mpich")),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
      "SLURM_NTASKS_PER_NODE": "4(x2)"}, RankInfo(5, 8, 1, 4, "slurm")),
    ({"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "4"},
     RankInfo(0, 4, 0, 4, "torchrun")),
    ({}, RankInfo(0, 1, 0, 1, "single")),
    # MPI wins over Slurm and torchrun variables set at the same time.
    ({"PMI_RANK": "1", "PMI_SIZE": "2", "SLURM_PROCID": "1", "SLURM_NTASKS": "2",
      "RANK": "7", "WORLD_SIZE": "9"}, RankInfo(1, 2, 1, 2, "mpich")),
]


@pytest.mark.parametrize("env,want", CASES, ids=[c[1].source for c in CASES])
def test_sources(env, want):
    info = discover(env)
    assert info == want
    assert info.uses_mpi == (want.source in ("openmpi", "mpich", "slurm"))


BAD = [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, r"RANK=2 is outside \[0, 2\)"),
    ({"RANK": "0"}, "WORLD_SIZE is missing"),
    ({"PMI_RANK": "0", "PMI_SIZE": "0"}, "PMI_SIZE=0, expected >= 1"),
    ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4",
      "OMPI_COMM_WORLD_LOCAL_RANK": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
     r"OMPI_COMM_WORLD_LOCAL_RANK=2 is outside \[0, 2\)"),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "3"},
     "SLURM_NTASKS_PER_NODE=3, expected 1..2"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, r"RANK=-1 is outside"),
]


@pytest.mark.parametrize("env,msg", BAD)
def test_bad_values(env, msg):
    with pytest.raises(LaunchError, match=msg):
        discover(env)


def test_reads_os_environ(monkeypatch):
    for k in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert discover() == RankInfo(1, 3, 1, 3, "torchrun")

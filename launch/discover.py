"""Find this process's rank, world size and local rank from the launcher's environment.

Launchers and the variables they set, tried in this order (the first launcher whose rank
variable is present wins)::

    source    rank / world size                           local rank / local size
    openmpi   OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_LOCAL_RANK / _LOCAL_SIZE
    mpich     PMI_RANK / PMI_SIZE                         MPI_LOCALRANKID / MPI_LOCALNRANKS
    slurm     SLURM_PROCID / SLURM_NTASKS                 SLURM_LOCALID / SLURM_NTASKS_PER_NODE
    torchrun  RANK / WORLD_SIZE                           LOCAL_RANK / LOCAL_WORLD_SIZE
    single    0 / 1                                       0 / 1

MPI launchers come first because ``srun --mpi=pmi2`` sets both PMI and Slurm variables and
they agree; torchrun-style variables come last because users often export ``RANK`` for other
reasons. A missing local variable falls back to (rank, world size) on one node.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dist_rt.errors import LaunchError

_SOURCES = (
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
)


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank in ``[0, world_size)``.
        world_size: Number of processes in the job.
        local_rank: Rank among the processes on this node (the GPU index it binds to).
        local_size: Number of processes on this node.
        source: Which launcher's variables were read (``openmpi``, ``mpich``, ``slurm``,
            ``torchrun`` or ``single``).
    """

    rank: int
    world_size: int
    local_rank: int
    local_size: int
    source: str

    @property
    def uses_mpi(self) -> bool:
        """True when an MPI launcher (or Slurm's PMI) started this process."""
        return self.source in ("openmpi", "mpich", "slurm")


def _int(env: Mapping[str, str], name: str, source: str) -> int:
    raw = env[name].strip()
    # Slurm writes per-node counts as "4(x2),3"; the first node's count is ours only on
    # homogeneous jobs, which is what we support.
    if source == "slurm" and name == "SLURM_NTASKS_PER_NODE":
        raw = re.split(r"[(,]", raw)[0]
    try:
        return int(raw)
    except ValueError:
        raise LaunchError(f"{source} launcher variable {name}={env[name]!r} is not an "
                          f"integer") from None


def discover(env: Mapping[str, str] | None = None) -> RankInfo:
    """Read rank, world size and local rank from the launcher's environment variables.

    Args:
        env: Variables to read (default ``os.environ``); tests pass a dict.

    Returns:
        A :class:`RankInfo`; ``source="single"`` (rank 0 of 1) when no launcher is found.

    Raises:
        LaunchError: A variable is not an integer or the values are inconsistent (rank outside
            the world, local rank outside the node, a world size below 1).
    """
    env = os.environ if env is None else env
    for source, r_var, n_var, lr_var, ln_var in _SOURCES:
        if r_var not in env:
            continue
        if n_var not in env:
            raise LaunchError(f"{source} launcher: {r_var} is set but {n_var} is missing")
        rank, size = _int(env, r_var, source), _int(env, n_var, source)
        local_rank = _int(env, lr_var, source) if lr_var in env else rank
        local_size = _int(env, ln_var, source) if ln_var in env else size
        if size < 1:
            raise LaunchError(f"{source} launcher: {n_var}={size}, expected >= 1")
        if not 0 <= rank < size:
            raise LaunchError(f"{source} launcher: {r_var}={rank} is outside [0, {size}) "
                              f"({n_var}={size})")
        if not 1 <= local_size <= size:
            raise LaunchError(f"{source} launcher: {ln_var}={local_size}, expected 1..{size} "
                              f"({n_var})")
        if not 0 <= local_rank < local_size:
            raise LaunchError(f"{source} launcher: {lr_var}={local_rank} is outside "
                              f"[0, {local_size}) ({ln_var}={local_size})")
        return RankInfo(rank, size, local_rank, local_size, source)
    return RankInfo(0, 1, 0, 1, "single")

"""``create_communicator``: pick and build the communicator for this process.

Backend choice::

    backend  world size 1        world size > 1
    auto     LocalCommunicator   MpiCommunicator (host arrays)
    local    LocalCommunicator   error (one rank cannot talk to others)
    mpi      MpiCommunicator     MpiCommunicator
    nccl     NcclCommunicator    NcclCommunicator (device arrays; one GPU per local rank)

``auto`` never picks NCCL: whether arrays live on the GPU is the caller's decision, and a
silent switch would hand CuPy arrays to code that expects NumPy.
"""

from __future__ import annotations

from collectives.communicator import Communicator, LocalCommunicator
from dist_rt.errors import LaunchError
from launch.discover import RankInfo, discover

BACKENDS = ("auto", "mpi", "nccl", "local")


def create_communicator(backend: str = "auto", info: RankInfo | None = None) -> Communicator:
    """Build the communicator for this process.

    Args:
        backend: ``"auto"``, ``"mpi"``, ``"nccl"`` or ``"local"`` (table above).
        info: This process's place in the job (default: :func:`launch.discover`).

    Returns:
        A ready communicator; call ``close()`` (or use it as a context manager) when done.

    Raises:
        LaunchError: Unknown backend, ``local`` with several ranks, or a failed bootstrap.
    """
    info = info or discover()
    if backend not in BACKENDS:
        raise LaunchError(f"rank {info.rank}/{info.world_size}: communicator backend "
                          f"{backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        backend = "local" if info.world_size == 1 else "mpi"
    if backend == "local":
        if info.world_size != 1:
            raise LaunchError(f"rank {info.rank}/{info.world_size}: the local communicator "
                              f"serves one rank, but the launcher started {info.world_size}")
        return LocalCommunicator()
    if backend == "mpi":
        from collectives.mpi import MpiCommunicator  # noqa: PLC0415 - mpi4py loads lazily

        comm = MpiCommunicator()
        if comm.size != info.world_size or comm.rank != info.rank:
            raise LaunchError(f"MPI says rank {comm.rank}/{comm.size} but the {info.source} "
                              f"launcher variables say {info.rank}/{info.world_size}")
        return comm
    try:
        from collectives.nccl import NcclCommunicator  # noqa: PLC0415 - cupy only for NCCL
    except ImportError as exc:
        raise LaunchError(f"rank {info.rank}/{info.world_size}: the NCCL backend needs CuPy "
                          f"with NCCL ({exc}); pip install cupy-cuda12x") from None
    return NcclCommunicator(info=info)

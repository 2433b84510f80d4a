"""Bootstrap helpers: the host side channel and the GPU of each local rank.

Side channel (host control messages, the NCCL unique id)::

    launcher                        side channel
    mpirun / mpiexec / srun (PMI)   MpiCommunicator over COMM_WORLD
    torchrun / python -m launch     StoreChannel over the TCP store on rank 0

Device binding: one GPU per local rank, ``local_rank % device_count`` (the modulo lets
``CUDA_VISIBLE_DEVICES`` narrowed to one GPU per process work too).
"""

from __future__ import annotations

from typing import Any

from dist_rt.errors import DeviceError
from launch.discover import RankInfo


def side_channel(info: RankInfo) -> Any:
    """Open the host side channel that fits how this process was started.

    Args:
        info: This process's place in the job.

    Returns:
        An object with ``broadcast_object(obj, root, group=None)``, ``all_gather_object``,
        ``abort(reason)`` and ``close()``: an ``MpiCommunicator`` or a ``StoreChannel``.
    """
    if info.uses_mpi or info.world_size == 1:
        from collectives.mpi import MpiCommunicator  # noqa: PLC0415 - mpi4py loads lazily

        return MpiCommunicator()
    from launch.store import StoreChannel  # noqa: PLC0415

    return StoreChannel(info)


def bind_device(info: RankInfo) -> int:
    """Make GPU ``local_rank % device_count`` current for this process (imports CuPy).

    Args:
        info: This process's place in the job.

    Returns:
        The CUDA device index now current.

    Raises:
        DeviceError: CuPy is missing or no CUDA device is visible.
    """
    try:
        import cupy  # noqa: PLC0415 - only the NCCL path needs CUDA

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - ImportError or any CUDA runtime error
        raise DeviceError(f"rank {info.rank}/{info.world_size}: no usable CUDA device for the "
                          f"NCCL backend ({type(exc).__name__}: {exc})") from exc
    if count < 1:
        raise DeviceError(f"rank {info.rank}/{info.world_size}: no CUDA device visible")
    dev = info.local_rank % count
    cupy.cuda.Device(dev).use()
    return dev

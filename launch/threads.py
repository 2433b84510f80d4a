"""CPU thread budget of a rank: BLAS pools sized so that the ranks of a node share its cores.

Why: NumPy's BLAS (OpenBLAS, MKL) starts one thread per core in *every* process, and its
threads spin while they wait for work. Under ``mpiexec -n 2`` on 2 cores that is 4 spinning
threads on 2 cores: the embedded default model ran 60 ms a step instead of 6.4 ms with one
BLAS thread a rank (4 ranks on the same 2 cores: 313 ms instead of 13 ms). torchrun
answers the same problem by setting ``OMP_NUM_THREADS=1``; here each rank gets its share::

    cores a rank may use (affinity)   local ranks   BLAS threads a rank
    all 8 (not bound)                 4             8 // 4 = 2
    all 2 (not bound)                 4             max(1, 2 // 4) = 1
    2 of 8 (bound by the launcher)    4             2 (the launcher already split them)
    all 64, cgroup quota of 4 CPUs    2             min(64 // 2, 4 // 2) = 2

A thread variable the user set (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, ``BLIS_NUM_THREADS``) wins: nothing is changed then. The limit is
applied at run time through ``threadpoolctl`` (the BLAS is already loaded by then); without
it the pools stay as they are and the note says so. A container's CPU quota (cgroup v2
``cpu.max``, v1 ``cpu.cfs_quota_us``) is shared by the node's ranks like the cores are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from launch.discover import RankInfo

#: Variables through which a user sets BLAS/OpenMP thread counts themselves.
USER_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")


def user_thread_vars(env: Mapping[str, str]) -> list[str]:
    """The :data:`USER_THREAD_VARS` set (non-blank) in ``env``."""
    return [v for v in USER_THREAD_VARS if env.get(v, "").strip()]


def usable_cpus() -> tuple[int, int]:
    """(cores this process may run on, cores of the machine)."""
    total = os.cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0)), total
    except (AttributeError, OSError):  # not Linux
        return total, total


def cgroup_cpus(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs the container's cgroup quota allows (quota / period), or None when unlimited."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:  # cgroup v2: "max 100000"
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:  # v1: -1 = none
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def blas_threads(info: RankInfo, env: Mapping[str, str] | None = None,
                 cpus: tuple[int, int] | None = None,
                 quota: float | None = -1.0) -> int | None:
    """BLAS threads this rank should use, or None to leave the pools alone.

    Args:
        info: This process's place in the job (``local_size`` ranks share the node).
        env: The environment (default ``os.environ``).
        cpus: (usable, total) cores (default :func:`usable_cpus`).
        quota: CPUs the container may use, None for no quota (default: :func:`cgroup_cpus`).

    Returns:
        None for a single process or when the user set a thread variable; else the share of
        the usable cores (see the module docstring's table), at least 1.
    """
    env = os.environ if env is None else env
    if info.local_size <= 1 or user_thread_vars(env):
        return None
    usable, total = usable_cpus() if cpus is None else cpus
    quota = cgroup_cpus() if quota == -1.0 else quota
    # A launcher that bound this rank to some cores already split them between the ranks.
    share = usable if usable < total else usable // info.local_size
    if quota is not None:
        share = min(share, int(quota) // info.local_size)
    return max(1, share)


def limit_blas_threads(info: RankInfo) -> str:
    """Limit this process's BLAS pools to :func:`blas_threads`; a one-line note of the result."""
    threads = blas_threads(info)
    if threads is None:
        set_by = user_thread_vars(os.environ)
        return (f"BLAS threads as set by {', '.join(set_by)}" if set_by
                else "BLAS threads unchanged (one process on this node)")
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - optional
    except ImportError:
        return (f"BLAS threads unchanged: threadpoolctl is not installed (set "
                f"OMP_NUM_THREADS={threads} for {info.local_size} ranks on this node)")
    threadpool_limits(limits=threads, user_api="blas")
    return f"BLAS threads {threads} a rank ({info.local_size} ranks on this node)"

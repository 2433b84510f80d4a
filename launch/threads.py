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

A thread variable the user set (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, ``BLIS_NUM_THREADS``) wins: nothing is changed then. The limit is
applied at run time through ``threadpoolctl`` (the BLAS is already loaded by then); without
it the pools stay as they are and the note says so. Not read: cgroup CPU quotas (a
container that shows all of the host's cores but may use only some gets too large a share
each; set ``OMP_NUM_THREADS`` there).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from launch.discover import RankInfo

#: Variables through which a user sets BLAS/OpenMP thread counts themselves.
USER_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")


def usable_cpus() -> tuple[int, int]:
    """(cores this process may run on, cores of the machine)."""
    total = os.cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0)), total
    except (AttributeError, OSError):  # not Linux
        return total, total


def blas_threads(info: RankInfo, env: Mapping[str, str] | None = None,
                 cpus: tuple[int, int] | None = None) -> int | None:
    """BLAS threads this rank should use, or None to leave the pools alone.

    Args:
        info: This process's place in the job (``local_size`` ranks share the node).
        env: The environment (default ``os.environ``).
        cpus: (usable, total) cores (default :func:`usable_cpus`).

    Returns:
        None for a single process or when the user set a thread variable; else the share of
        the usable cores (see the module docstring's table), at least 1.
    """
    env = os.environ if env is None else env
    if info.local_size <= 1 or any(env.get(v, "").strip() for v in USER_THREAD_VARS):
        return None
    usable, total = usable_cpus() if cpus is None else cpus
    if usable < total:  # the launcher bound this rank to its own cores
        return max(1, usable)
    return max(1, usable // info.local_size)


def limit_blas_threads(info: RankInfo) -> str:
    """Limit this process's BLAS pools to :func:`blas_threads`; a one-line note of the result."""
    threads = blas_threads(info)
    if threads is None:
        set_by = [v for v in USER_THREAD_VARS if os.environ.get(v, "").strip()]
        return (f"BLAS threads as set by {', '.join(set_by)}" if set_by
                else "BLAS threads unchanged (one process on this node)")
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - optional
    except ImportError:
        return (f"BLAS threads unchanged: threadpoolctl is not installed (set "
                f"OMP_NUM_THREADS={threads} for {info.local_size} ranks on this node)")
    threadpool_limits(limits=threads, user_api="blas")
    return f"BLAS threads {threads} a rank ({info.local_size} ranks on this node)"

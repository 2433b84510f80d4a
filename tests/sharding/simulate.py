"""Run every rank of a plan in one process (threads + an in-memory communicator).

Fast numerics for test_plan.py; the real multi-process check is ``mpi_worker.py`` under
``mpiexec``. The communicator implements the collectives DistCollective uses with NumPy::

    op              rank r gets
    all_reduce      op over ranks of x_i
    all_gather      concat_i x_i along axis
    reduce_scatter  chunk r (along axis) of op over ranks of x_i
    all_to_all      concat_i chunk r of x_i along axis
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dist_rt.ops import RunContext

_REDUCE = {"sum": np.add, "max": np.maximum, "min": np.minimum, "prod": np.multiply}


class ThreadCommunicator:
    """One rank's view of an in-process group of ``size`` threads."""

    def __init__(self, rank: int, size: int, barrier: threading.Barrier, slots: list):
        self.rank, self.size = rank, size
        self._barrier, self._slots = barrier, slots

    def _exchange(self, x):
        self._slots[self.rank] = x
        self._barrier.wait()
        vals = list(self._slots)
        self._barrier.wait()
        return vals

    def _reduce(self, x, op):
        vals = [np.asarray(v) for v in self._exchange(np.asarray(x))]
        out = vals[0].copy()
        for v in vals[1:]:
            out = _REDUCE[op](out, v)
        return out

    def all_reduce(self, x, op="sum", group=None):
        return self._reduce(x, op)

    def all_gather(self, x, axis=0, group=None):
        return np.concatenate(self._exchange(np.asarray(x)), axis=axis)

    def reduce_scatter(self, x, op="sum", axis=0, group=None):
        return np.split(self._reduce(x, op), self.size, axis=axis)[self.rank]

    def all_to_all(self, x, axis=0, group=None):
        vals = self._exchange(np.asarray(x))
        return np.concatenate([np.split(v, self.size, axis=axis)[self.rank] for v in vals],
                              axis=axis)

    def broadcast(self, x, root=0, group=None):
        return np.asarray(self._exchange(np.asarray(x))[root])

    def all_gather_object(self, obj):
        return self._exchange(obj)

    def barrier(self):
        self._barrier.wait()


def run_ranks(plan, feeds: dict[str, np.ndarray], runner) -> list[dict[str, np.ndarray]]:
    """Partition ``plan`` for every rank and run them together.

    Args:
        plan: A ``ShardingPlan``.
        feeds: Network inputs (every rank gets them whole).
        runner: ``runner(network, feeds, rt) -> outputs`` (e.g. ``nets.run_network``).

    Returns:
        Each rank's outputs.
    """
    n = plan.world_size
    barrier, slots = threading.Barrier(n, timeout=60), [None] * n
    locals_ = [plan.partition(r) for r in range(n)]

    def one(r):
        comm = ThreadCommunicator(r, n, barrier, slots)
        return runner(locals_[r], feeds, RunContext(communicator=comm, rank=r, world_size=n))

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))

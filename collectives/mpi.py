"""``MpiCommunicator``: the eight collectives over mpi4py on host (NumPy) arrays.

Each collective maps onto one MPI call on a front-layout buffer (``collectives._layout``)::

    all_reduce      MPI_Allreduce             reduce_scatter  MPI_Reduce_scatter_block
    all_gather      MPI_Allgather             all_to_all      MPI_Alltoall
    broadcast       MPI_Bcast                 gather          MPI_Gather
    reduce          MPI_Reduce                scatter         MPI_Scatter

Data movement uses ``MPI_BYTE`` on a byte view, so every NumPy dtype (float16, bfloat16 from
ml_dtypes, bool, ...) moves unchanged. Reductions use MPI's typed ops; float16 and bfloat16
have no portable MPI reduction type, so they are reduced in float32 and rounded back once
(more accurate than NCCL's in-type ring, never less). ``avg`` is ``sum`` followed by a
division by the group size on every rank; for integer dtypes the quotient is truncated
toward zero, like C integer division (and ``ncclAvg``).

Sub-groups (an ordered list of world ranks) get their own MPI communicator, created with
``MPI_Comm_create_group`` (collective over the group members only, so ranks outside the group
need not take part) and cached. ``Group.Incl`` keeps the list order, so group rank ``i`` is
``group[i]``.

Failure handling: mpich's Hydra and Open MPI's mpirun kill the whole job when one rank dies
abnormally, so survivors blocked in a collective do not hang. ``abort`` prints the reason and
calls ``MPI_Abort``. An optional watchdog (``DIST_RT_COLLECTIVE_TIMEOUT`` seconds) aborts the
job when one collective takes longer, naming the collective and the rank; a polling
(non-blocking ``Iallreduce`` + ``Test``) design was rejected because it burns a core and adds
latency to every small collective, while the watchdog thread costs nothing until it fires.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from collectives import _layout as lay
from collectives.communicator import Communicator, watchdog_timeout
from dist_rt.errors import CommunicatorError, LaunchError

_WIDEN = {"float16", "bfloat16"}
#: Seconds ``abort`` waits between printing its reason and ``MPI_Abort`` (see ``abort``).
ABORT_GRACE_S = 0.2


def _mpi() -> Any:
    try:
        from mpi4py import MPI  # noqa: PLC0415 - optional dependency, loaded on first use
    except ImportError as exc:
        raise LaunchError(f"the MPI backend needs mpi4py ({exc}); pip install mpi4py "
                          f"mpich") from exc
    return MPI


class _Watchdog:
    """Aborts the MPI job when one collective runs longer than ``timeout`` seconds."""

    def __init__(self, comm: MpiCommunicator, timeout: float):
        self.comm, self.timeout = comm, timeout
        self.current: tuple[str, float] | None = None
        thread = threading.Thread(target=self._loop, name="dist_rt-collective-watchdog",
                                  daemon=True)
        thread.start()

    def _loop(self) -> None:
        period = min(1.0, self.timeout / 4)
        while True:
            time.sleep(period)
            current = self.current
            if current is not None and time.monotonic() - current[1] > self.timeout:
                name, _ = current
                self.comm.abort(f"rank {self.comm.rank}/{self.comm.size}, {name}: collective "
                                f"did not finish in {self.timeout:g} s "
                                f"(DIST_RT_COLLECTIVE_TIMEOUT); a peer is dead or stuck")
                return


class MpiCommunicator(Communicator):
    """Collectives over MPI on NumPy arrays (CPU runs and CI).

    Rank table (world of 4, ``group=[3, 1]``)::

        world rank | group rank | MPI sub-communicator
        3          | 0          | cached comm for (3, 1)
        1          | 1          | cached comm for (3, 1)
        0, 2       | -          | must not call

    Args:
        comm: An ``mpi4py.MPI.Comm`` to run on (default: a duplicate of ``COMM_WORLD``, so our
            traffic never matches the application's messages).
        timeout: Collective watchdog in seconds (default: ``DIST_RT_COLLECTIVE_TIMEOUT``, off
            when unset or 0).
    """

    device = "cpu"

    def __init__(self, comm: Any = None, timeout: float | None = None):
        mpi = _mpi()
        self._MPI = mpi
        self._comm = comm.Dup() if comm is not None else mpi.COMM_WORLD.Dup()
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        self._groups: dict[tuple[int, ...], Any] = {}
        timeout = watchdog_timeout(self.rank, timeout, 0.0)
        self._watchdog = _Watchdog(self, timeout) if timeout > 0 else None
        self._closed = False

    # -- guard: array type, watchdog, MPI errors --------------------------------------------

    def _call(self, name: str, x: Any, **kw: Any) -> Any:
        self._check_array(x, name)
        with self._guard(name):
            return super()._call(name, x, **kw)

    def _check_array(self, x: Any, name: str) -> None:
        if not isinstance(x, np.ndarray):
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: expected a "
                                    f"numpy.ndarray (MPI runs on host memory), got "
                                    f"{type(x).__module__}.{type(x).__name__}")

    @contextmanager
    def _guard(self, name: str) -> Iterator[None]:
        if self._closed:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: the communicator "
                                    f"is closed")
        if self._watchdog is not None:
            self._watchdog.current = (name, time.monotonic())
        try:
            yield
        except self._MPI.Exception as exc:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: MPI failed: "
                                    f"{exc.Get_error_string()} (do all ranks pass the same "
                                    f"shape and dtype?)") from exc
        finally:
            if self._watchdog is not None:
                self._watchdog.current = None

    # -- helpers -----------------------------------------------------------------------------

    def _sub(self, group: list[int]) -> Any:
        key = tuple(group)
        if key == tuple(range(self.size)):
            return self._comm
        if key not in self._groups:
            members = self._comm.Get_group().Incl(list(key))
            # The tag keeps concurrent creations of different groups apart.
            tag = sum((i + 1) * 131 * g for i, g in enumerate(key)) % 30000
            self._groups[key] = self._comm.Create_group(members, tag)
            members.Free()
        return self._groups[key]

    def _mpi_op(self, op: str) -> Any:
        m = self._MPI
        return {"sum": m.SUM, "avg": m.SUM, "prod": m.PROD, "max": m.MAX, "min": m.MIN}[op]

    def _reducible(self, x: np.ndarray, name: str) -> np.ndarray:
        """Contiguous array of an MPI-reducible dtype (float16/bfloat16 widened to float32)."""
        if x.dtype.name in _WIDEN:
            return np.array(x, dtype=np.float32, order="C")
        if x.dtype.kind not in "fiu":
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: cannot reduce dtype "
                                    f"{x.dtype}; expected a float or integer dtype")
        # np.array keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d).
        return x if x.flags.c_contiguous else np.array(x, order="C")

    @staticmethod
    def _finish(y: np.ndarray, op: str, n: int, dtype: np.dtype) -> np.ndarray:
        """Apply avg's division and cast back to the caller's dtype."""
        if op == "avg":
            if y.dtype.kind in "iu":
                y = (np.sign(y) * (np.abs(y) // n)).astype(y.dtype)
            else:
                y = y / y.dtype.type(n)
        return y.astype(dtype, copy=False)

    @staticmethod
    def _bytes(x: np.ndarray) -> list[Any]:
        from mpi4py import MPI  # noqa: PLC0415 - already loaded by __init__

        return [x.reshape(-1).view(np.uint8), MPI.BYTE]

    # -- collectives -------------------------------------------------------------------------

    def _all_reduce_impl(self, x, *, op, group):
        comm = self._sub(group)
        send = self._reducible(x, "all_reduce")
        recv = np.empty_like(send)
        comm.Allreduce(send, recv, self._mpi_op(op))
        return self._finish(recv, op, len(group), x.dtype)

    def _all_gather_impl(self, x, *, axis, group):
        comm, n = self._sub(group), len(group)
        send = lay.to_front(np, x, axis)
        recv = np.empty((n * send.shape[0],) + send.shape[1:], x.dtype)
        comm.Allgather(self._bytes(send), self._bytes(recv))
        return lay.from_front(np, recv, axis, max(x.ndim, 1))

    def _broadcast_impl(self, x, *, root, group):
        buf = np.array(x, order="C", copy=True)
        self._sub(group).Bcast(self._bytes(buf), root=root)
        return buf

    def _reduce_impl(self, x, *, op, root, group):
        comm = self._sub(group)
        send = self._reducible(x, "reduce")
        recv = np.empty_like(send)
        comm.Reduce(send, recv, self._mpi_op(op), root=root)
        if comm.Get_rank() != root:
            return x.copy()
        return self._finish(recv, op, len(group), x.dtype)

    def _reduce_scatter_impl(self, x, *, op, axis, group):
        comm, n = self._sub(group), len(group)
        send = self._reducible(lay.to_front(np, x, axis), "reduce_scatter")
        recv = np.empty((send.shape[0] // n,) + send.shape[1:], send.dtype)
        comm.Reduce_scatter_block(send, recv, self._mpi_op(op))
        return lay.from_front(np, self._finish(recv, op, n, x.dtype), axis, x.ndim)

    def _all_to_all_impl(self, x, *, axis, group):
        comm = self._sub(group)
        send = lay.to_front(np, x, axis)
        recv = np.empty_like(send)
        comm.Alltoall(self._bytes(send), self._bytes(recv))
        return lay.from_front(np, recv, axis, x.ndim)

    def _gather_impl(self, x, *, root, axis, group):
        comm, n = self._sub(group), len(group)
        send = lay.to_front(np, x, axis)
        is_root = comm.Get_rank() == root
        recv = np.empty((n * send.shape[0],) + send.shape[1:], x.dtype) if is_root else None
        comm.Gather(self._bytes(send), self._bytes(recv) if is_root else None, root=root)
        return lay.from_front(np, recv, axis, max(x.ndim, 1)) if is_root else x.copy()

    def _scatter_impl(self, x, *, root, axis, group):
        comm, n = self._sub(group), len(group)
        send = lay.to_front(np, x, axis)
        recv = np.empty((send.shape[0] // n,) + send.shape[1:], x.dtype)
        is_root = comm.Get_rank() == root
        comm.Scatter(self._bytes(send) if is_root else None, self._bytes(recv), root=root)
        return lay.from_front(np, recv, axis, x.ndim)

    # -- point to point, control ------------------------------------------------------------

    def _send_impl(self, x, dst):
        self._check_array(x, "send")
        with self._guard("send"):
            self._comm.Send(self._bytes(np.ascontiguousarray(x)), dest=dst, tag=7)

    def _recv_impl(self, like, src):
        self._check_array(like, "recv")
        out = np.empty(like.shape, like.dtype)
        with self._guard("recv"):
            self._comm.Recv(self._bytes(out), source=src, tag=7)
        return out

    def _barrier_impl(self):
        with self._guard("barrier"):
            self._comm.Barrier()

    def broadcast_object(self, obj: Any, root: int = 0, group: list[int] | None = None) -> Any:
        """Every rank gets ``root``'s picklable object (host control message).

        Args:
            obj: The object (only the root's matters).
            root: Group rank that sends (the world rank when ``group`` is None).
            group: Ordered world ranks taking part (default: all); others must not call.

        Returns:
            The root's object.
        """
        comm = self._comm if group is None else self._sub(self._check_group(group, "bcast"))
        with self._guard("broadcast_object"):
            return comm.bcast(obj, root=root)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank gets the list of every rank's picklable object, in rank order.

        Args:
            obj: This rank's object.

        Returns:
            ``[obj_0, ..., obj_{size-1}]``.
        """
        with self._guard("all_gather_object"):
            return self._comm.allgather(obj)

    def abort(self, reason: str = "", code: int = 1) -> None:
        """Print ``reason`` on stderr and end every rank of the job (``MPI_Abort``).

        Args:
            reason: One line saying why (printed with a ``dist_rt: abort:`` prefix).
            code: Exit status the launcher reports.
        """
        if reason:
            sys.stderr.write(f"dist_rt: abort: {reason}\n")
        sys.stderr.flush()
        sys.stdout.flush()
        # The launcher forwards each rank's output through its own proxy and kills every rank
        # on MPI_Abort; without a pause the lines above were sometimes lost (mpich's hydra:
        # empty output in one of this test suite's CI runs, tests/reliability).
        time.sleep(ABORT_GRACE_S)
        self._MPI.COMM_WORLD.Abort(code)

    def close(self) -> None:
        """Free the sub-group communicators and our duplicate of the world communicator.

        Teardown order: sub-groups first, then the world duplicate; MPI itself is finalized by
        mpi4py at exit. Calling ``close`` twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        for comm in self._groups.values():
            comm.Free()
        self._groups.clear()
        self._comm.Free()

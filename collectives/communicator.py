"""The ``Communicator`` contract every backend (MPI, NCCL) implements.

Semantics for a group of ``n`` ranks (the whole world unless ``group`` lists rank ids in
order), input ``x`` on every rank, chunks taken along ``axis``::

    op              rank r receives                               shape change along axis
    all_reduce      reduce_op(x_0 .. x_{n-1})                     same
    all_gather      concat(x_0 .. x_{n-1})                        d -> n*d
    broadcast       x_root                                        same
    reduce          reduce_op(x_0 .. x_{n-1}) on root (others: x) same
    reduce_scatter  chunk r of reduce_op(x_0 .. x_{n-1})          n*d -> d
    all_to_all      concat_j(chunk r of x_j)                      same (n*d -> n*d)
    gather          concat(x_0 .. x_{n-1}) on root (others: x)    d -> n*d on root
    scatter         chunk r of x_root                             n*d -> d

Rank table for ``group=[2, 0, 3]`` in a world of 4 (rank 1 is not in the group and must not
call the collective)::

    world rank | group rank
    2          | 0
    0          | 1
    3          | 2

Uneven splits (``x.shape[axis] % n != 0`` for reduce_scatter, all_to_all, scatter) raise
``CommunicatorError``; dist_rt's planner never asks for them. Reduce ops: ``sum``, ``prod``,
``max``, ``min``, ``avg``.

Subclasses implement the ``_impl`` methods; the public methods check arguments and name the
rank and op in every error (STYLE.md rule 2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from dist_rt.errors import CommunicatorError, LaunchError

REDUCE_OPS = ("sum", "prod", "max", "min", "avg")
COLLECTIVES = ("all_reduce", "all_gather", "broadcast", "reduce", "reduce_scatter",
               "all_to_all", "gather", "scatter")


def watchdog_timeout(rank: int, timeout: float | None, default: float) -> float:
    """Seconds a collective may run before the watchdog fails the job (0 = no watchdog).

    Args:
        rank: This rank (for the error message).
        timeout: The communicator's ``timeout`` argument; None reads the environment.
        default: Used when ``DIST_RT_COLLECTIVE_TIMEOUT`` is unset or empty.

    Raises:
        LaunchError: ``DIST_RT_COLLECTIVE_TIMEOUT`` is not a number.
    """
    if timeout is not None:
        return timeout
    raw = os.environ.get("DIST_RT_COLLECTIVE_TIMEOUT", "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise LaunchError(f"rank {rank}: DIST_RT_COLLECTIVE_TIMEOUT={raw!r} is not a number of "
                          f"seconds") from None


class Communicator:
    """Base class: rank bookkeeping, argument checks, and the guard around each collective.

    Attributes:
        rank: This process's rank in the world.
        size: Number of ranks in the world.
        device: ``"cpu"`` (NumPy arrays) or ``"cuda"`` (CuPy arrays).
    """

    rank: int = 0
    size: int = 1
    device: str = "cpu"

    # -- public API ------------------------------------------------------------------------

    def all_reduce(self, x: Any, op: str = "sum", group: Sequence[int] | None = None) -> Any:
        """Reduce ``x`` over the group with ``op``; every rank gets the result."""
        return self._call("all_reduce", x, op=op, group=group)

    def all_gather(self, x: Any, axis: int = 0, group: Sequence[int] | None = None) -> Any:
        """Concatenate every rank's ``x`` along ``axis`` in group-rank order."""
        return self._call("all_gather", x, axis=axis, group=group)

    def broadcast(self, x: Any, root: int = 0, group: Sequence[int] | None = None) -> Any:
        """Every rank gets the root's ``x`` (``root`` is a group rank)."""
        return self._call("broadcast", x, root=root, group=group)

    def reduce(self, x: Any, op: str = "sum", root: int = 0,
               group: Sequence[int] | None = None) -> Any:
        """Reduce onto the root; other ranks get their ``x`` back unchanged."""
        return self._call("reduce", x, op=op, root=root, group=group)

    def reduce_scatter(self, x: Any, op: str = "sum", axis: int = 0,
                       group: Sequence[int] | None = None) -> Any:
        """Reduce, then group rank r keeps chunk r along ``axis``."""
        return self._call("reduce_scatter", x, op=op, axis=axis, group=group)

    def all_to_all(self, x: Any, axis: int = 0, group: Sequence[int] | None = None) -> Any:
        """Chunk j of rank i's ``x`` goes to rank j, placed at position i along ``axis``."""
        return self._call("all_to_all", x, axis=axis, group=group)

    def gather(self, x: Any, root: int = 0, axis: int = 0,
               group: Sequence[int] | None = None) -> Any:
        """Concatenate every rank's ``x`` on the root; others get ``x`` back."""
        return self._call("gather", x, root=root, axis=axis, group=group)

    def scatter(self, x: Any, root: int = 0, axis: int = 0,
                group: Sequence[int] | None = None) -> Any:
        """Group rank r gets chunk r (along ``axis``) of the root's ``x``.

        Every rank passes an ``x`` of the full shape (only the root's contents matter).
        """
        return self._call("scatter", x, root=root, axis=axis, group=group)

    def send(self, x: Any, dst: int) -> None:
        """Send ``x`` to world rank ``dst``."""
        self._check_peer(dst, "send")
        self._send_impl(x, dst)

    def recv(self, like: Any, src: int) -> Any:
        """Receive an array shaped and typed like ``like`` from world rank ``src``."""
        self._check_peer(src, "recv")
        return self._recv_impl(like, src)

    def barrier(self) -> None:
        """Block until every rank has arrived."""
        self._barrier_impl()

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """Host-side control message: every rank gets the root's small Python/NumPy object."""
        raise NotImplementedError

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Host-side control message: every rank gets the list of every rank's object."""
        raise NotImplementedError

    def abort(self, reason: str = "", code: int = 1) -> None:
        """End every rank now (used when this rank failed and others may be waiting)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (collective: every rank must call it)."""

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- checks ------------------------------------------------------------------------------

    def _call(self, name: str, x: Any, **kw: Any) -> Any:
        group = self._check_group(kw.get("group"), name)
        kw["group"] = group
        if "op" in kw and kw["op"] not in REDUCE_OPS:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: reduce op "
                                    f"{kw['op']!r} is not one of {REDUCE_OPS}")
        if "root" in kw and not 0 <= kw["root"] < len(group):
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: root {kw['root']} "
                                    f"is outside the group of {len(group)} ranks")
        if "axis" in kw:
            ndim = len(x.shape)
            if not -ndim <= kw["axis"] < max(ndim, 1):
                raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: axis "
                                        f"{kw['axis']} is out of range for shape {tuple(x.shape)}")
            kw["axis"] = kw["axis"] % ndim if ndim else 0
            if name in ("reduce_scatter", "all_to_all", "scatter"):
                d = x.shape[kw["axis"]] if ndim else 1
                if d % len(group):
                    raise CommunicatorError(
                        f"rank {self.rank}/{self.size}, {name}: dim {kw['axis']} of shape "
                        f"{tuple(x.shape)} is {d}, not divisible by the group size {len(group)}")
        return getattr(self, f"_{name}_impl")(x, **kw)

    def _check_group(self, group: Sequence[int] | None, name: str) -> list[int]:
        if group is None or len(group) == 0:
            return list(range(self.size))
        group = [int(g) for g in group]
        if len(set(group)) != len(group) or any(not 0 <= g < self.size for g in group):
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: group {group} must "
                                    f"list distinct ranks in [0, {self.size})")
        if self.rank not in group:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: this rank is not in "
                                    f"group {group}")
        return group

    def _check_peer(self, peer: int, name: str) -> None:
        if not 0 <= peer < self.size or peer == self.rank:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: peer {peer} must be "
                                    f"another rank in [0, {self.size})")

    # -- backend hooks -----------------------------------------------------------------------

    def _all_reduce_impl(self, x, *, op, group):
        raise NotImplementedError

    def _all_gather_impl(self, x, *, axis, group):
        raise NotImplementedError

    def _broadcast_impl(self, x, *, root, group):
        raise NotImplementedError

    def _reduce_impl(self, x, *, op, root, group):
        raise NotImplementedError

    def _reduce_scatter_impl(self, x, *, op, axis, group):
        raise NotImplementedError

    def _all_to_all_impl(self, x, *, axis, group):
        raise NotImplementedError

    def _gather_impl(self, x, *, root, axis, group):
        raise NotImplementedError

    def _scatter_impl(self, x, *, root, axis, group):
        raise NotImplementedError

    def _send_impl(self, x, dst):
        raise NotImplementedError

    def _recv_impl(self, like, src):
        raise NotImplementedError

    def _barrier_impl(self):
        raise NotImplementedError


class LocalCommunicator(Communicator):
    """The world of one rank: every collective is the identity. Used when N = 1."""

    def __init__(self, device: str = "cpu"):
        self.rank, self.size, self.device = 0, 1, device

    def _all_reduce_impl(self, x, *, op, group):
        return x.copy()

    def _all_gather_impl(self, x, *, axis, group):
        return x.copy()

    def _broadcast_impl(self, x, *, root, group):
        return x.copy()

    def _reduce_impl(self, x, *, op, root, group):
        return x.copy()

    def _reduce_scatter_impl(self, x, *, op, axis, group):
        return x.copy()

    def _all_to_all_impl(self, x, *, axis, group):
        return x.copy()

    def _gather_impl(self, x, *, root, axis, group):
        return x.copy()

    def _scatter_impl(self, x, *, root, axis, group):
        return x.copy()

    def _barrier_impl(self):
        return None

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """One rank: the object itself."""
        return obj

    def all_gather_object(self, obj: Any) -> list[Any]:
        """One rank: a list of one."""
        return [obj]

    def abort(self, reason: str = "", code: int = 1) -> None:
        """Nothing to abort beyond this process: raise so the caller unwinds."""
        raise CommunicatorError(f"rank 0/1 aborted: {reason}")

"""``NcclCommunicator``: the eight collectives over NCCL on CuPy (device) arrays.

Mapping (``n`` ranks in the group, ``g`` this rank's group rank, buffers in front layout)::

    all_reduce      ncclAllReduce                 reduce_scatter  ncclReduceScatter
    all_gather      ncclAllGather                 broadcast       ncclBroadcast
    reduce          ncclReduce                    all_to_all      grouped send/recv to all j
    gather          grouped send -> root          scatter         grouped root send -> all j

Every call is stream-ordered on CuPy's *current* stream and never synchronizes the host, so
a sequence of collectives (and the layout copies around them) can be captured into a CUDA
graph (``stream.begin_capture()`` ... ``end_capture()``) and replayed. Create sub-group
communicators (the first call on a group) before capturing: creating one is a blocking,
collective host operation.

Data movement ops send bytes (``ncclUint8``), so any dtype moves; reductions use NCCL's typed
ops: float16/32/64, bfloat16 (``ncclBfloat16 = 9``), int8/uint8/int32/uint32/int64/uint64.
``avg`` is ``ncclAvg`` (= 4, NCCL >= 2.10) for floats; for integer dtypes it is ``ncclSum``
then a division truncating toward zero on the same stream, so MPI and NCCL agree exactly.

Sub-groups get their own NCCL communicator (``ncclCommInitRank`` over the group, unique id
from group rank 0 over the host side channel), cached per ordered group. ``ncclCommSplit``
was rejected: it is collective over the *whole* world, but ranks outside a group never call
its collectives.

Small sums over the whole world (float32/float16/bfloat16, up to 512 KiB by default) take a
one-shot all-reduce over NVLink peer memory instead (``collectives/nvlink.py``): one kernel
of a few microseconds against NCCL's ~20. It is set up collectively at construction when
every rank is on one host with peer access to every other GPU, and
``DIST_RT_NVLINK_ALLREDUCE=0`` turns it off; ``nvlink_status`` says which path runs.

Dead peers: a collective whose peer died spins on the GPU forever. A watchdog thread keeps
the event recorded after each (uncaptured) collective; when the oldest is not done after
``DIST_RT_COLLECTIVE_TIMEOUT`` seconds (default 300, 0 = off) or ``ncclCommGetAsyncError``
reports an error, it prints which collective and rank and aborts the job through the side
channel (MPI_Abort or exit, which the spawner turns into the end of every rank). Process exit,
not ``ncclCommAbort``, releases the spinning kernels: the latter was seen to block with the GIL
held. Replays of captured graphs are not watched.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from typing import Any

import cupy as cp
from cupy.cuda import nccl

from collectives import _layout as lay
from collectives.communicator import Communicator, watchdog_timeout
from collectives.nvlink import NvlinkAllReduce
from dist_rt.errors import CommunicatorError, LaunchError
from launch.bootstrap import bind_device, side_channel
from launch.discover import RankInfo, discover

# ncclDataType_t / ncclRedOp_t values from nccl.h (stable since NCCL 2.0 / 2.10).
_NCCL_TYPES = {"int8": 0, "uint8": 1, "int32": 2, "uint32": 3, "int64": 4, "uint64": 5,
               "float16": 6, "float32": 7, "float64": 8, "bfloat16": 9}
_NCCL_OPS = {"sum": 0, "prod": 1, "max": 2, "min": 3, "avg": 4}
_UINT8 = 1
_D2D = 3  # cudaMemcpyDeviceToDevice


def _uid_arg(values: list[int], like: Any) -> Any:
    """The unique id in the type this CuPy's ``NcclCommunicator`` takes, judged from ``like``
    (``bytes`` in CuPy >= 13, a tuple of signed C chars before)."""
    if isinstance(like, bytes):
        return bytes(values)
    return tuple(v - 256 if v > 127 else v for v in values)


def _capturing(stream: Any) -> bool:
    """True while ``stream`` records a CUDA graph (no events may be recorded then)."""
    return stream.ptr != 0 and stream.is_capturing()


class _Watchdog:
    """Watches the events recorded after each collective; aborts the job on a stall."""

    def __init__(self, owner: NcclCommunicator, timeout: float):
        self.owner, self.timeout = owner, timeout
        self.pending: collections.deque = collections.deque()
        self.free: collections.deque = collections.deque()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name="dist_rt-nccl-watchdog")
        self.thread.start()

    def push(self, name: str, stream: Any) -> None:
        ev = self.free.popleft() if self.free else cp.cuda.Event(disable_timing=True)
        ev.record(stream)
        self.pending.append((ev, name, time.monotonic()))

    def _loop(self) -> None:
        cp.cuda.Device(self.owner.device_id).use()  # CUDA's current device is per thread
        period = min(1.0, self.timeout / 10)
        while not self.stopped:
            time.sleep(period)
            while self.pending and self.pending[0][0].done:
                self.free.append(self.pending.popleft()[0])
            try:
                for comm in list(self.owner._comms.values()):
                    comm.check_async_error()
            except nccl.NcclError as exc:
                if not self.stopped:  # close() may destroy a communicator under us
                    self.owner._fail(f"NCCL reported an asynchronous error: {exc}")
                return
            if self.pending and time.monotonic() - self.pending[0][2] > self.timeout:
                name = self.pending[0][1]
                self.owner._fail(f"{name}: collective did not finish in {self.timeout:g} s "
                                 f"(DIST_RT_COLLECTIVE_TIMEOUT); a peer is dead or stuck")
                return


class NcclCommunicator(Communicator):
    """Collectives over NCCL on CuPy arrays, one GPU per local rank.

    Rank table (2 nodes x 2 GPUs, ``group=[3, 0]``)::

        world rank | local rank (GPU) | group rank | NCCL communicator
        0          | 0                | 1          | world, (3, 0)
        1          | 1                | -          | world
        2          | 0                | -          | world
        3          | 1                | 0          | world, (3, 0)

    Args:
        info: This process's place in the job (default: ``launch.discover()``).
        side: Host side channel (default: MPI under an MPI launcher, else the TCP store).
        timeout: Watchdog seconds (default ``DIST_RT_COLLECTIVE_TIMEOUT`` or 300; 0 = off).
    """

    device = "cuda"

    def __init__(self, info: RankInfo | None = None, side: Any = None,
                 timeout: float | None = None):
        info = info or discover()
        self.info, self.rank, self.size = info, info.rank, info.world_size
        self.device_id = bind_device(info)
        self._own_side = side is None
        self._side = side_channel(info) if side is None else side
        self._comms: dict[tuple[int, ...], Any] = {}
        self._closed = False
        self._world = list(range(self.size))
        self._comm_for(self._world)
        timeout = watchdog_timeout(self.rank, timeout, 300.0)
        # Collective; every rank gets an instance or every rank gets None (then NCCL).
        self._nvlink, self._nvlink_off = NvlinkAllReduce.create(
            self.rank, self.size, self.device_id, self._side, timeout)
        self._watch = _Watchdog(self, timeout) if timeout > 0 else None
        self._one = cp.zeros(1, cp.float32)

    @property
    def nvlink(self) -> NvlinkAllReduce | None:
        """The one-shot NVLink all-reduce when it is active (the same on every rank), else None."""
        return self._nvlink

    @property
    def nvlink_status(self) -> str:
        """One line saying which path small all-reduces take, and why NCCL when it is NCCL."""
        if self._nvlink is None:
            return f"all_reduce path: NCCL (nvlink one-shot off: {self._nvlink_off})"
        return (f"all_reduce path: nvlink one-shot for sums of float32/float16/bfloat16, "
                f"1 B to {self._nvlink.max_bytes} B, over the whole world; NCCL otherwise")

    def all_reduce_add_rmsnorm(self, x: Any, residual: Any, weight: Any,
                               eps: float) -> tuple[Any, Any] | None:
        """All-reduce (sum, whole world) fused with the AddRMSNorm that follows it, or None.

        ``(S, Y)`` with ``S = residual + all_reduce(x)`` and ``Y = rmsnorm(S) * weight`` in
        one NVLink kernel (:meth:`NvlinkAllReduce.all_reduce_add_rmsnorm`), when the one-shot
        path is active and takes these arrays; None otherwise (then the caller all-reduces
        and normalizes separately). Every rank gets the same answer for the same shapes.
        """
        nv = self._nvlink
        if nv is None or not nv.accepts_norm(x, residual, weight):
            return None
        self._check_array(x, "all_reduce")
        stream = cp.cuda.get_current_stream()
        out = nv.all_reduce_add_rmsnorm(x, residual, weight, eps)
        if self._watch is not None and not _capturing(stream):
            self._watch.push("all_reduce", stream)
        return out

    # -- NCCL communicators per group -------------------------------------------------------

    def _comm_for(self, group: list[int]) -> Any:
        key = tuple(group)
        comm = self._comms.get(key)
        if comm is None:
            whole = key == tuple(range(self.size))
            # The id travels as 128 ints in 0..255 (JSON-able for the TCP store).
            mine = nccl.get_unique_id()
            uid = [b & 0xFF for b in mine] if group[0] == self.rank else None
            uid = self._side.broadcast_object(uid, 0, None if whole else list(key))
            try:
                comm = nccl.NcclCommunicator(len(group), _uid_arg(uid, mine),
                                             group.index(self.rank))
            except nccl.NcclError as exc:
                raise LaunchError(f"rank {self.rank}/{self.size}: ncclCommInitRank for group "
                                  f"{group} failed: {exc}") from exc
            self._comms[key] = comm
        return comm

    # -- guard -------------------------------------------------------------------------------

    def _call(self, name: str, x: Any, **kw: Any) -> Any:
        self._check_array(x, name)
        stream = cp.cuda.get_current_stream()
        try:
            out = super()._call(name, x, **kw)
        except nccl.NcclError as exc:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: NCCL failed: "
                                    f"{exc}") from exc
        if self._watch is not None and not _capturing(stream):
            self._watch.push(name, stream)
        return out

    def _check_array(self, x: Any, name: str) -> None:
        if self._closed:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: the communicator "
                                    f"is closed")
        if not isinstance(x, cp.ndarray):
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: expected a "
                                    f"cupy.ndarray (NCCL runs on device memory), got "
                                    f"{type(x).__module__}.{type(x).__name__}")
        if x.device.id != self.device_id:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: array is on GPU "
                                    f"{x.device.id}, this rank's communicator on GPU "
                                    f"{self.device_id}")

    def _types(self, x: Any, op: str, name: str) -> tuple[int, int]:
        dt = _NCCL_TYPES.get(x.dtype.name)
        if dt is None:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {name}: NCCL cannot reduce "
                                    f"dtype {x.dtype}; expected one of {sorted(_NCCL_TYPES)}")
        if op == "avg" and x.dtype.kind in "iu":
            return dt, _NCCL_OPS["sum"]  # divided afterwards by _int_avg
        return dt, _NCCL_OPS[op]

    @staticmethod
    def _int_avg(y: Any, op: str, n: int) -> Any:
        """Integer ``avg``: the sum divided by ``n``, truncated toward zero (C division)."""
        if op != "avg" or y.dtype.kind not in "iu":
            return y
        if y.dtype.kind == "u":
            return y // n
        return (cp.abs(y) // n * cp.sign(y)).astype(y.dtype)

    @staticmethod
    def _contig(x: Any) -> Any:
        return x if x.flags.c_contiguous else cp.ascontiguousarray(x).reshape(x.shape)

    # -- collectives -------------------------------------------------------------------------

    def _all_reduce_impl(self, x, *, op, group):
        send = self._contig(x)
        nv = self._nvlink
        if nv is not None and op == "sum" and nv.accepts(send) and group == self._world:
            return nv.all_reduce(send)
        out = cp.empty_like(send)
        dt, rop = self._types(x, op, "all_reduce")
        self._comm_for(group).allReduce(send.data.ptr, out.data.ptr, send.size, dt, rop,
                                        cp.cuda.get_current_stream().ptr)
        return self._int_avg(out, op, len(group))

    def _all_gather_impl(self, x, *, axis, group):
        send = lay.to_front(cp, x, axis)
        out = cp.empty((len(group) * send.shape[0],) + send.shape[1:], x.dtype)
        self._comm_for(group).allGather(send.data.ptr, out.data.ptr, send.nbytes, _UINT8,
                                        cp.cuda.get_current_stream().ptr)
        return lay.from_front(cp, out, axis, max(x.ndim, 1))

    def _broadcast_impl(self, x, *, root, group):
        send = self._contig(x)
        out = cp.empty_like(send)
        self._comm_for(group).broadcast(send.data.ptr, out.data.ptr, send.nbytes, _UINT8, root,
                                        cp.cuda.get_current_stream().ptr)
        return out

    def _reduce_impl(self, x, *, op, root, group):
        send = self._contig(x)
        out = cp.empty_like(send)
        dt, rop = self._types(x, op, "reduce")
        self._comm_for(group).reduce(send.data.ptr, out.data.ptr, send.size, dt, rop, root,
                                     cp.cuda.get_current_stream().ptr)
        return self._int_avg(out, op, len(group)) if group.index(self.rank) == root else x.copy()

    def _reduce_scatter_impl(self, x, *, op, axis, group):
        send = lay.to_front(cp, x, axis)
        out = cp.empty((send.shape[0] // len(group),) + send.shape[1:], x.dtype)
        dt, rop = self._types(x, op, "reduce_scatter")
        self._comm_for(group).reduceScatter(send.data.ptr, out.data.ptr, out.size, dt, rop,
                                            cp.cuda.get_current_stream().ptr)
        return lay.from_front(cp, self._int_avg(out, op, len(group)), axis, x.ndim)

    def _all_to_all_impl(self, x, *, axis, group):
        send = lay.to_front(cp, x, axis)
        out = cp.empty_like(send)
        self._exchange(group, send, out, senders=range(len(group)), receivers=range(len(group)))
        return lay.from_front(cp, out, axis, x.ndim)

    def _gather_impl(self, x, *, root, axis, group):
        send = lay.to_front(cp, x, axis)
        g, n = group.index(self.rank), len(group)
        out = cp.empty((n * send.shape[0],) + send.shape[1:], x.dtype) if g == root else None
        # Rank j's whole buffer is chunk j of the root's output.
        self._p2p(group, [(root, send.data.ptr, send.nbytes)] if g != root else [],
                  [(j, out.data.ptr + j * send.nbytes, send.nbytes)
                   for j in range(n) if j != g] if g == root else [])
        if g != root:
            return x.copy()
        self._copy(out.data.ptr + g * send.nbytes, send.data.ptr, send.nbytes)
        return lay.from_front(cp, out, axis, max(x.ndim, 1))

    def _scatter_impl(self, x, *, root, axis, group):
        send = lay.to_front(cp, x, axis)
        g, n = group.index(self.rank), len(group)
        out = cp.empty((send.shape[0] // n,) + send.shape[1:], x.dtype)
        chunk = out.nbytes
        self._p2p(group, [(j, send.data.ptr + j * chunk, chunk)
                          for j in range(n) if j != g] if g == root else [],
                  [(root, out.data.ptr, chunk)] if g != root else [])
        if g == root:
            self._copy(out.data.ptr, send.data.ptr + g * chunk, chunk)
        return lay.from_front(cp, out, axis, x.ndim)

    # -- point to point ----------------------------------------------------------------------

    def _exchange(self, group, send, out, senders, receivers) -> None:
        """All-to-all of equal chunks: chunk j of ``send`` to group rank j, from j into ``out``."""
        g, n = group.index(self.rank), len(group)
        chunk = send.nbytes // n
        self._p2p(group, [(j, send.data.ptr + j * chunk, chunk) for j in senders if j != g],
                  [(j, out.data.ptr + j * chunk, chunk) for j in receivers if j != g])
        self._copy(out.data.ptr + g * chunk, send.data.ptr + g * chunk, chunk)

    def _p2p(self, group, sends, recvs) -> None:
        """One NCCL group of byte sends/recvs: lists of (group rank, pointer, bytes)."""
        comm, ptr = self._comm_for(group), cp.cuda.get_current_stream().ptr
        nccl.groupStart()
        try:
            for peer, buf, nbytes in sends:
                comm.send(buf, nbytes, _UINT8, peer, ptr)
            for peer, buf, nbytes in recvs:
                comm.recv(buf, nbytes, _UINT8, peer, ptr)
        finally:
            nccl.groupEnd()

    @staticmethod
    def _copy(dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            cp.cuda.runtime.memcpyAsync(dst, src, nbytes, _D2D,
                                        cp.cuda.get_current_stream().ptr)

    def _send_impl(self, x, dst):
        self._check_array(x, "send")
        send = self._contig(x)
        self._p2p(list(range(self.size)), [(dst, send.data.ptr, send.nbytes)], [])

    def _recv_impl(self, like, src):
        out = cp.empty(like.shape, like.dtype)
        self._p2p(list(range(self.size)), [], [(src, out.data.ptr, out.nbytes)])
        return out

    def _barrier_impl(self):
        """A one-element all-reduce, then wait for this stream (a barrier syncs by definition)."""
        stream = cp.cuda.get_current_stream()
        self._comm_for(list(range(self.size))).allReduce(
            self._one.data.ptr, self._one.data.ptr, 1, _NCCL_TYPES["float32"], 0, stream.ptr)
        stream.synchronize()

    # -- control -----------------------------------------------------------------------------

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """Host control message over the side channel: every rank gets ``root``'s object.

        Args:
            obj: A small JSON-able or NumPy object (only the root's matters).
            root: World rank that sends.

        Returns:
            The root's object.
        """
        return self._side.broadcast_object(obj, root)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Host control message over the side channel: every rank's object, in rank order.

        Args:
            obj: This rank's small JSON-able or NumPy object.

        Returns:
            ``[obj_0, ..., obj_{size-1}]``.
        """
        return self._side.all_gather_object(obj)

    def _fail(self, message: str) -> None:
        self.abort(f"rank {self.rank}/{self.size}, {message}")

    def abort(self, reason: str = "", code: int = 1) -> None:
        """``ncclCommAbort`` every communicator, then end every rank through the side channel.

        The reason is printed first; then the side channel ends the job (MPI_Abort, or exit
        for the spawner). ``ncclCommAbort`` is deliberately not called (see below).

        Args:
            reason: One line saying why (printed on stderr).
            code: Exit status.
        """
        sys.stderr.write(f"dist_rt: abort: {reason}\n")
        sys.stderr.flush()
        # No ncclCommAbort here: on an H200 host (2026-11-21) it blocked behind the kernel
        # spinning on the stalled peer while holding the GIL, so no timeout around it could
        # fire and the job hung. Ending the process frees the GPU context just as well, and
        # the side channel (MPI_Abort, or the spawner) ends every other rank.
        self._comms.clear()
        self._side.abort("", code)

    def close(self) -> None:
        """Destroy the NCCL communicators, then the side channel (MPI after NCCL).

        Teardown order: stop the watchdog, finish this rank's queued work, release the NVLink
        buffers (after an NCCL barrier, so no peer still reads them), destroy every NCCL
        communicator, close the side channel we opened. Calling twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.stopped = True
            self._watch.thread.join(timeout=2.0)
        cp.cuda.get_current_stream().synchronize()
        if self._nvlink is not None:
            self._nvlink.close(self._barrier_impl)
            self._nvlink = None
        for comm in self._comms.values():
            comm.destroy()
        self._comms.clear()
        if self._own_side:
            self._side.close()

"""One-shot all-reduce over NVLink peer memory for small messages (one kernel per call).

``NcclCommunicator.all_reduce`` uses it for ``op="sum"`` over the whole world (in rank order)
of float32/float16/bfloat16 messages of 1 B to ``max_bytes``; everything else goes to NCCL.
Why: NCCL's small all_reduce costs ~18-20 us, and tensor-parallel decode does 64 per step
(2 per layer x 32 layers) of 8-256 KiB; this path is one kernel of a few microseconds.

Math (``n`` ranks, ``x_r`` rank r's input, ``B`` blocks, block b owns chunk ``C_b``)::

    y[C_b] = (((-0 + x_0[C_b]) + x_1[C_b]) + ... + x_{n-1}[C_b])     in float32, rounded once

Every rank adds in rank order, so every rank gets bit-identical results.

Memory: each rank ``cudaMalloc``s one region (not the CuPy pool: an IPC handle maps a whole
allocation) and opens every peer's through ``cudaIpcOpenMemHandle``::

    offset              contents                                   written by
    0                   data[0]: max_bytes                         owner (its input, even epochs)
    M                   data[1]: max_bytes                         owner (its input, odd epochs)
    flags_off           flags[world][max_blocks] uint64            rank p writes row p
    counters_off        counters[max_blocks] uint64 (the epoch)    owner

Rank table (4 ranks, block b of one call at epoch e, slot s = e & 1)::

    rank r, block b                                  touches
    1. copy x_r[C_b] -> own data[s][C_b]             own memory
    2. st.release.sys flags_p[r][b] = e, every p     each peer's flags (row r)
    3. spin until own flags[p][b] >= e, every p      own memory (ld.acquire.sys)
    4. y[C_b] = sum over p of data_p[s][C_b]         every peer's data (NVLink loads)
    5. counters[j] = e for j = b, b + B, ...         own memory

Why two data slots make reuse safe: rank r overwrites data[s] at epoch e + 2 only after its
kernel of epoch e + 1 has finished, so after its block 0 saw flags[p][0] >= e + 1 from every
peer p. A peer stores that flag at the start of its epoch e + 1 kernel, which runs after its
epoch e kernel, the last reader of r's data[s], has finished. So no peer still reads data[s]
when r writes it again, and no rank can run more than one epoch ahead of another.

Decisions that differ from the first design, and why:

* One epoch per call for all blocks, not a counter per block: chunk boundaries depend on
  the message size, so block 5 of one call may write bytes that block 0 of a peer's previous
  call is still reading. The argument above holds for any partition because it only uses
  block 0, which every call has; the counters stay equal because each block also writes
  those of the blocks (``b + B``, ``b + 2B`` ...) that this call does not launch.
* 64-bit epochs and flags: at 64 calls per decode step a uint32 wraps in days, and a block
  that is idle for 2^31 calls would compare wrong even with wrap-safe arithmetic.
* The spin traps (``__trap``, a CUDA error instead of a hang) after the communicator's
  ``DIST_RT_COLLECTIVE_TIMEOUT`` + 10 s, not after a fixed 20 s: a peer may legitimately be
  late by more than 20 s (rank 0 writing outputs, tactic timing), and with the watchdog on
  an eager call is reported by the watchdog first, with its clearer message. Timeout 0 (no
  watchdog) means no trap, as NCCL would also wait forever. Captured graphs are not watched,
  so there the trap is what ends a hang.
* The input is copied into the registered buffer (step 1) instead of peers reading the
  caller's array: reading arbitrary arrays needs them registered by IPC (vLLM registers
  every graph buffer); the copy is local and costs far less than an NVLink round trip.

Blocks: ``B = min(max_blocks, ceil(vectors / 512))`` with 16-byte vectors, ``max_blocks =
min(32, fewest SMs over the ranks)``, so every block is resident at once on every GPU (a
block spins on its peers' block of the same index and never on another block of its own
rank). Every rank derives ``B`` from the size alone, so all ranks agree.

Default ``max_bytes`` is 512 KiB: decode messages are 8-256 KiB, so this leaves 2x headroom;
one-shot moves ``(n - 1) S`` bytes into each GPU against ring's ``2 (n - 1) / n S``, so its
lead shrinks as S grows, and at 512 KiB on 4 GPUs (1.5 MB in, a few microseconds of NVLink)
it should still be under NCCL's latency floor. Memory cost: 2 x max_bytes per rank. Tune it
with ``DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES`` from the latency table of
``tests/collectives/nvlink_worker.py bench``.

``allreduce_add_rmsnorm`` is the same protocol with one block per row (chunk b = row b),
whose step 4 also adds the residual and applies RMSNorm (:meth:`NvlinkAllReduce.
all_reduce_add_rmsnorm`): a tensor-parallel block's all-reduce is always followed by that
AddRMSNorm, and fusing them saves a launch and a pass over the sum per all-reduce (64 per
decode step of a 32-layer model). The reuse argument above only needs block 0, so the two
kernels interleave freely on one communicator.

Calls on one communicator must be stream-ordered (one stream, or streams joined by events;
a graph's all-reduces on one branch): two kernels running at once on one rank would take the
same epoch and share the slot. Every rank must issue the same sequence of calls, as for NCCL.

Creation is collective and every rank reaches the same answer: the settings are gathered
and decided from the gathered list (so one rank's environment cannot disagree with
another's), and after allocation and after opening the peers' handles every rank gathers a
success flag; one failure anywhere means NCCL everywhere.

CuPy is imported lazily (``_cupy()``) so the pure functions here (environment parsing, the
decision, the layout, the launch shape) run and are tested without a GPU.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from collectives import _nvlink_source
from dist_rt.errors import CommunicatorError, ExecutionError, LaunchError

#: Largest world the kernel takes (one pointer argument per rank).
MAX_RANKS = 8
#: Most blocks per call (also bounded by the fewest SMs over the ranks).
MAX_BLOCKS = 32
#: Threads per block (the ``__launch_bounds__`` of the kernel).
THREADS = 512
#: Default largest message, bytes.
DEFAULT_MAX_BYTES = 512 << 10
#: Largest accepted ``DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES`` (two buffers of it per rank).
LIMIT_MAX_BYTES = 256 << 20
#: Storage type in the kernel source per dtype name.
TYPES = {"float32": "float", "float16": "h16", "bfloat16": "b16"}
_ALIGN = 256
_LAZY_PEER_ACCESS = 1  # cudaIpcMemLazyEnablePeerAccess
_TRAP_MARGIN_S = 10.0


# -- pure logic (no CUDA) --------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What every rank agreed on: the largest message and the most blocks per call."""

    max_bytes: int
    max_blocks: int


@dataclass(frozen=True)
class Layout:
    """Byte offsets inside one rank's region (see the module docstring)."""

    slot_bytes: int
    flags_off: int
    counters_off: int
    total: int


def _round_up(value: int, to: int) -> int:
    return -(-value // to) * to


def parse_bytes(text: str) -> int:
    """Parse ``524288``, ``512K``, ``1M`` (powers of 1024; a trailing ``B`` is allowed).

    Raises:
        ValueError: Not a size.
    """
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B")
    mult = units.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def settings_from_env(env: dict[str, str] | None = None) -> tuple[bool, int]:
    """This rank's wish: (enabled, largest message in bytes), from the environment.

    ``DIST_RT_NVLINK_ALLREDUCE``: ``0``/``off``/``false``/``no`` disables, unset or
    ``1``/``on``/``true``/``yes`` enables. ``DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES``: a size
    (``524288``, ``512K``, ``1M``), default 512 KiB.

    Args:
        env: The environment (default ``os.environ``).

    Raises:
        LaunchError: A value is not one of the above, or the size is out of range.
    """
    env = os.environ if env is None else env
    raw = env.get("DIST_RT_NVLINK_ALLREDUCE", "").strip().lower()
    if raw in ("0", "off", "false", "no"):
        enabled = False
    elif raw in ("", "1", "on", "true", "yes"):
        enabled = True
    else:
        raise LaunchError(f"DIST_RT_NVLINK_ALLREDUCE={raw!r}, expected 0 or 1")
    size = env.get("DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES", "").strip()
    if not size:
        return enabled, DEFAULT_MAX_BYTES
    try:
        max_bytes = parse_bytes(size)
    except (ValueError, OverflowError):
        raise LaunchError(f"DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES={size!r} is not a size like "
                          f"524288, 512K or 1M") from None
    if not 16 <= max_bytes <= LIMIT_MAX_BYTES:
        raise LaunchError(f"DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES={size!r} is {max_bytes} bytes, "
                          f"expected 16 to {LIMIT_MAX_BYTES}")
    return enabled, max_bytes


def decide(infos: list[dict[str, Any]]) -> tuple[Plan | None, str]:
    """The plan every rank computes from the same gathered list, or None and why not.

    Args:
        infos: Per rank, in rank order: ``host``, ``bus`` (PCI bus id), ``sms``, ``enabled``,
            ``max_bytes``, ``error`` (a malformed environment, or "") and ``unusable`` (why
            this rank's GPU could not be queried, or "").

    Returns:
        ``(Plan, "")`` when the path can run, else ``(None, reason)``.

    Raises:
        LaunchError: Some rank's environment is malformed (raised on every rank alike).
    """
    n = len(infos)
    for r, info in enumerate(infos):
        if info.get("error"):
            raise LaunchError(f"rank {r}/{n}: {info['error']}")
    if not 2 <= n <= MAX_RANKS:
        return None, f"world size {n} is outside 2..{MAX_RANKS}"
    for r, info in enumerate(infos):
        if info.get("unusable"):
            return None, f"rank {r}: {info['unusable']}"
    off = [r for r, info in enumerate(infos) if not info["enabled"]]
    if off:
        return None, f"disabled by DIST_RT_NVLINK_ALLREDUCE=0 on rank(s) {off}"
    hosts = sorted({info["host"] for info in infos})
    if len(hosts) > 1:
        return None, f"ranks span {len(hosts)} hosts ({', '.join(hosts[:3])})"
    seen: dict[str, int] = {}
    for r, info in enumerate(infos):
        if info["bus"] in seen:
            return None, f"ranks {seen[info['bus']]} and {r} share GPU {info['bus']}"
        seen[info["bus"]] = r
    blocks = min(MAX_BLOCKS, min(int(info["sms"]) for info in infos))
    return Plan(min(int(info["max_bytes"]) for info in infos), blocks), ""


def layout(plan: Plan, world: int) -> Layout:
    """Offsets of the two data slots, the flags and the counters in one rank's region."""
    slot = _round_up(plan.max_bytes, _ALIGN)
    flags_off = 2 * slot
    counters_off = flags_off + _round_up(world * plan.max_blocks * 8, _ALIGN)
    return Layout(slot, flags_off, counters_off,
                  counters_off + _round_up(plan.max_blocks * 8, _ALIGN))


def launch_shape(count: int, itemsize: int, max_blocks: int) -> tuple[int, int]:
    """(blocks, threads) for ``count`` elements: 16-byte vectors, up to THREADS per block.

    Depends on nothing but its arguments, so every rank picks the same grid.
    """
    vectors = -(-count // (16 // itemsize))
    blocks = max(1, min(max_blocks, -(-vectors // THREADS)))
    per_block = -(-vectors // blocks)
    return blocks, min(THREADS, _round_up(max(per_block, 32), 32))


# -- CUDA (kernel source: collectives/_nvlink_source.py) ----------------------------------------


_MODULE: Any = None


def _cupy() -> Any:
    import cupy  # noqa: PLC0415 - CUDA only; the pure functions above must import without it

    return cupy


_KERNEL_NAMES = ("allreduce_one_shot", "allreduce_add_rmsnorm")


def _kernels(cp: Any) -> dict[tuple[str, str], Any]:
    """(kernel, dtype name) -> kernel (NVRTC once per process; CuPy caches it on disk)."""
    global _MODULE
    if _MODULE is None:
        names = [f"{k}<{t}>" for k in _KERNEL_NAMES for t in TYPES.values()]
        _MODULE = cp.RawModule(code=_nvlink_source.SOURCE, options=("--std=c++14",),
                               name_expressions=names)
    return {(k, d): _MODULE.get_function(f"{k}<{t}>")
            for k in _KERNEL_NAMES for d, t in TYPES.items()}


def _local_info(cp: Any, device_id: int) -> dict[str, Any]:
    """What this rank contributes to :func:`decide`."""
    info: dict[str, Any] = {"host": socket.gethostname(), "enabled": False, "bus": "",
                            "sms": 0, "max_bytes": DEFAULT_MAX_BYTES, "error": "",
                            "unusable": ""}
    try:
        info["enabled"], info["max_bytes"] = settings_from_env()
    except LaunchError as exc:
        info["error"] = str(exc)
    try:  # a failure here must still reach the gather, or the other ranks would wait forever
        info["bus"] = cp.cuda.runtime.deviceGetPCIBusId(device_id)
        props = cp.cuda.runtime.getDeviceProperties(device_id)
        info["sms"] = int(props["multiProcessorCount"])
    except Exception as exc:  # noqa: BLE001 - any CUDA error means "use NCCL"
        info["unusable"] = f"GPU {device_id} query failed: {type(exc).__name__}: {exc}"
    return info


def _first_failure(errors: list[str]) -> str:
    """The first rank's error of a gathered list ("" = fine), or "" when none failed."""
    for r, err in enumerate(errors):
        if err:
            return f"rank {r}: {err}"
    return ""


class NvlinkAllReduce:
    """Registered peer buffers and the one-shot kernel for one communicator's world.

    Build it with :meth:`create` (collective); call :meth:`accepts` then :meth:`all_reduce`;
    :meth:`close` (collective) before the NCCL communicators are destroyed.

    Attributes:
        rank: This rank.
        size: World size.
        max_bytes: Largest message taken (the same on every rank).
        calls: Number of all-reduces this object ran (for tests and benchmarks).
    """

    def __init__(self, cp: Any, rank: int, size: int, device_id: int, plan: Plan,
                 timeout: float):
        # Compiles the kernels and allocates nothing; create() does the rest, collectively.
        self._cp = cp
        self.rank, self.size, self.device_id = rank, size, device_id
        self.max_bytes, self.max_blocks = plan.max_bytes, plan.max_blocks
        self.calls = 0
        self._layout = layout(plan, size)
        self._bases = [0] * size
        self._opened: list[int] = []
        self._own = 0
        self._fns = _kernels(cp)
        from dist_rt.runtime.cuda.launch import launch  # noqa: PLC0415 - imports CuPy

        self._launch_kernel = launch
        trap_s = timeout + _TRAP_MARGIN_S if timeout > 0 else 0.0
        self._trap_ns = np.uint64(int(trap_s * 1e9))
        self._fixed: tuple = ()

    # -- collective construction ------------------------------------------------------------

    @classmethod
    def create(cls, rank: int, size: int, device_id: int, side: Any,
               timeout: float) -> tuple[NvlinkAllReduce | None, str]:
        """Build the path on every rank, or on none (collective over ``side``).

        Args:
            rank: This rank.
            size: World size (1 or above 8: returns at once, no message exchanged).
            device_id: This rank's CUDA device.
            side: Host side channel with ``all_gather_object``.
            timeout: The watchdog's seconds (0 = none); the kernel traps 10 s later.

        Returns:
            ``(instance, "")`` on every rank, or ``(None, reason)`` on every rank.

        Raises:
            LaunchError: A rank's ``DIST_RT_NVLINK_ALLREDUCE*`` variable is malformed.
        """
        if not 2 <= size <= MAX_RANKS:
            return None, f"world size {size} is outside 2..{MAX_RANKS}"
        cp = _cupy()
        infos = side.all_gather_object(_local_info(cp, device_id))
        plan, reason = decide(infos)
        if plan is None:
            return None, reason
        inst, handle, error = None, "", ""
        try:
            cls._check_peers(cp, rank, device_id, [info["bus"] for info in infos])
            inst = cls(cp, rank, size, device_id, plan, timeout)
            handle = inst._allocate()
        except Exception as exc:  # noqa: BLE001 - any CUDA/NVRTC failure means "use NCCL"
            error = f"{type(exc).__name__}: {exc}"
        # Every rank takes part in both gathers whatever happened locally, so all decide alike.
        got = side.all_gather_object([handle if not error else "", error])
        failed = _first_failure([e for _, e in got])
        if not failed:
            try:
                inst._open([h for h, _ in got])
            except Exception as exc:  # noqa: BLE001 - as above
                error = f"cudaIpcOpenMemHandle: {type(exc).__name__}: {exc}"
            failed = _first_failure(side.all_gather_object(error))
        if failed:
            if inst is not None:
                try:
                    inst._release()
                except Exception:  # noqa: BLE001 - best effort: every rank must return None
                    pass
            return None, failed
        return inst, ""

    @staticmethod
    def _check_peers(cp: Any, rank: int, device_id: int, buses: list[str]) -> None:
        """Every peer's GPU must be visible here and reachable by peer access."""
        rt = cp.cuda.runtime
        for r, bus in enumerate(buses):
            if r == rank:
                continue
            try:
                dev = rt.deviceGetByPCIBusId(bus)
            except rt.CUDARuntimeError:
                raise CommunicatorError(f"rank {r}'s GPU {bus} is not visible to rank "
                                        f"{rank} (CUDA_VISIBLE_DEVICES)") from None
            if not rt.deviceCanAccessPeer(device_id, dev):
                raise CommunicatorError(f"GPU {device_id} cannot access rank {r}'s GPU {dev} "
                                        f"({bus}) as a peer")

    def _allocate(self) -> str:
        """cudaMalloc and zero our region; returns its IPC handle as hex (JSON-able)."""
        rt = self._cp.cuda.runtime
        with self._cp.cuda.Device(self.device_id):
            self._own = rt.malloc(self._layout.total)
            # Zeros: epoch 0 in every counter and flag. Finished before any peer can learn
            # the handle (it travels only after this returns), so no peer flag is overwritten.
            rt.memset(self._own, 0, self._layout.total)
            rt.deviceSynchronize()
            self._bases[self.rank] = self._own
            return rt.ipcGetMemHandle(self._own).hex()

    def _open(self, handles: list[str]) -> None:
        rt = self._cp.cuda.runtime
        with self._cp.cuda.Device(self.device_id):
            for r, handle in enumerate(handles):
                if r != self.rank:
                    self._bases[r] = rt.ipcOpenMemHandle(bytes.fromhex(handle),
                                                         _LAZY_PEER_ACCESS)
                    self._opened.append(self._bases[r])
        lay = self._layout
        u64 = np.uint64
        bases = [u64(b) for b in self._bases] + [u64(0)] * (MAX_RANKS - self.size)
        self._fixed = (np.int32(self.rank), np.int32(self.size), np.int32(self.max_blocks),
                       u64(lay.slot_bytes), u64(lay.flags_off), u64(lay.counters_off),
                       self._trap_ns, u64(self._own), *bases)

    def _release(self) -> None:
        """Unmap the peers' regions and free ours (no synchronization; see close())."""
        rt = self._cp.cuda.runtime
        with self._cp.cuda.Device(self.device_id):
            for ptr in self._opened:
                rt.ipcCloseMemHandle(ptr)
            self._opened.clear()
            if self._own:
                rt.free(self._own)
                self._own = 0

    # -- use ---------------------------------------------------------------------------------

    def accepts(self, x: Any) -> bool:
        """True when ``x`` (contiguous) has a dtype and size this path takes."""
        return x.dtype.name in TYPES and 0 < x.nbytes <= self.max_bytes

    def all_reduce(self, x: Any) -> Any:
        """Sum ``x`` over the world into a new array; stream-ordered, capturable.

        Args:
            x: A C-contiguous float32/float16/bfloat16 CuPy array that :meth:`accepts`.

        Returns:
            A new array of ``x``'s shape and dtype, equal on every rank.

        Raises:
            CommunicatorError: The launch failed.
        """
        cp = self._cp
        out = cp.empty_like(x)
        blocks, threads = launch_shape(x.size, x.itemsize, self.max_blocks)
        args = (np.uint64(x.data.ptr), np.uint64(out.data.ptr), np.int64(x.size),
                np.int32(x.data.ptr % 16 == 0), np.int32(out.data.ptr % 16 == 0), *self._fixed)
        self._launch("allreduce_one_shot", x.dtype.name, blocks, threads, args, "all_reduce")
        return out

    def _launch(self, kernel: str, dtype: str, blocks: int, threads: int, args: tuple,
                what: str) -> None:
        """Launch one of the kernels on the current stream and count the call."""
        try:
            self._launch_kernel(self._fns[kernel, dtype], blocks, threads, args)
        except (self._cp.cuda.driver.CUDADriverError, ExecutionError) as exc:
            raise CommunicatorError(f"rank {self.rank}/{self.size}, {what}: the nvlink "
                                    f"kernel {kernel} failed to launch: {exc}") from exc
        self.calls += 1

    def accepts_norm(self, x: Any, residual: Any, weight: Any) -> bool:
        """True when :meth:`all_reduce_add_rmsnorm` takes these arrays.

        One block per row of the last axis, so at most ``max_blocks`` rows; rows of whole
        16-byte vectors; every array C-contiguous, 16-byte aligned, of one dtype; ``weight``
        1-D over the last axis. Every rank decides alike (shapes and dtypes are SPMD, and
        allocations are 256-byte aligned on every rank).
        """
        if not (self.accepts(x) and x.ndim >= 1 and residual.shape == x.shape
                and residual.dtype == x.dtype == weight.dtype and weight.ndim == 1
                and weight.shape[0] == x.shape[-1]):
            return False
        cols = x.shape[-1]
        return (cols % (16 // x.itemsize) == 0 and x.size // cols <= self.max_blocks
                and all(a.flags.c_contiguous and a.data.ptr % 16 == 0
                        for a in (x, residual, weight)))

    def all_reduce_add_rmsnorm(self, x: Any, residual: Any, weight: Any,
                               eps: float) -> tuple[Any, Any]:
        """``A = sum over ranks of x``; ``S = A + residual``; ``Y = rmsnorm(S) * weight``.

        The all-reduce of a row-parallel projection and the AddRMSNorm after it in one
        kernel (a block per row): ``A`` never reaches memory and a launch is saved. ``A``
        and ``S`` are rounded to the dtype exactly as the unfused pair stores them, so ``S``
        matches the unfused path bit for bit and ``Y`` up to the order of the squares' sum.

        Args:
            x, residual, weight: Arrays that :meth:`accepts_norm`.
            eps: The RMSNorm epsilon.

        Returns:
            ``(S, Y)``, new arrays of ``x``'s shape and dtype, equal on every rank.

        Raises:
            CommunicatorError: The launch failed.
        """
        cp = self._cp
        s, y = cp.empty_like(x), cp.empty_like(x)
        cols = x.shape[-1]
        rows = x.size // cols
        threads = min(THREADS, _round_up(-(-cols * x.itemsize // 16), 32))
        u64 = np.uint64
        args = (u64(x.data.ptr), u64(residual.data.ptr), u64(weight.data.ptr),
                u64(s.data.ptr), u64(y.data.ptr), np.int32(cols), np.float32(eps),
                *self._fixed)
        self._launch("allreduce_add_rmsnorm", x.dtype.name, rows, threads, args,
                     "all_reduce + AddRMSNorm")
        return s, y

    def close(self, barrier: Callable[[], None]) -> None:
        """Wait for every rank's kernels, then unmap and free (collective).

        The barrier matters: a peer may still be reading our region in its last call when
        we finish ours, so nobody frees before every rank's device is idle. It is the NCCL
        communicator's (a device all-reduce, then a stream sync), not a side-channel gather:
        after a TCP-store gather, rank 0 may close the store and exit while the others are
        still reading the gathered keys.

        Args:
            barrier: Returns once every rank has called it (``NcclCommunicator.barrier``).
        """
        if not self._own:
            return
        with self._cp.cuda.Device(self.device_id):
            self._cp.cuda.runtime.deviceSynchronize()
        barrier()
        self._release()

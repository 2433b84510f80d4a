"""``CudaGraphRunner``: run an engine's layers as one captured CUDA graph per input shape.

First call for a shape signature (input names, shapes, dtypes):

1. **Eager run** on a private non-blocking stream with a private ``cupy.cuda.MemoryPool``:
   compiles kernels, creates cuBLAS handles, and records the values of *signature
   constants*: layers that depend only on input shapes and weights (``Shape -> Range ->
   Gather(cos)``, casts of weights made by the precision pass). Those layers read shapes
   on the host, which a graph cannot do, and their values cannot change while the shapes
   do not, so they are kept (on the device, and small int ones also on the host).
2. **Capture** of every other layer on the same stream (relaxed mode, so the pool may still
   grow with ``cudaMalloc`` while capturing). GEMMs go through the direct cuBLAS binding
   (:mod:`dist_rt.runtime.cuda.cublas`), whose handle and workspace the eager run made.
   Intermediates are dropped after their last reader exactly as in eager mode, so the pool
   reuses their blocks inside the graph. The pool is private: no other allocation ever
   receives a block the graph writes. Small int inputs that ops read as shapes (Reshape's
   target, Slice's starts...) are passed as host NumPy values, so nothing synchronizes
   inside the capture.

Later calls copy the feeds into the captured input buffers and launch the graph: no
allocation, no Python per layer. Graph memory stays held until the runner is dropped.

**One arena per signature** (``DIST_RT_CUDA_ARENA=0`` turns it off). The capture above runs
twice. The first records every allocation the layers make (size, the step that made it)
and which tensors live in it, so each allocation gets a lifetime: until the last reader of
the last tensor (or view) in it, or its own step for a kernel's scratch. The allocations
are then placed in one block with the builder's best-fit planner
(``memory_plan.best_fit``) and the second capture hands out exactly those offsets, in the
same order. Peak activation memory is that block: the lower bound from tensor lifetimes
plus kernel scratch, instead of the ~2x a caching pool reaches. A replay of the arena graph
is checked against the eager run of the same inputs; any difference (an allocation that
outlived what the trace saw) falls back to the pool-backed graph.

Rejected alternative: ``cudaMallocAsync`` pools with graph-owned allocations would free the
activations between replays, but CuPy's support for them inside capture is partial and the
activations are needed again at the next replay anyway.

A signature whose capture fails (an op that must synchronize, a host-side communicator)
falls back to the eager path for good, with the reason kept in ``fallback``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cupy
import numpy as np

from dist_rt.builder.passes.memory_plan import best_fit
from dist_rt.errors import DistRtError, ExecutionError

#: Int constants/values up to this many elements are also kept as host NumPy arrays.
HOST_INT_LIMIT = 64
#: Inputs that ops read on the host (beyond ``Op.shape_inputs``), by op type.
HOST_INPUTS: dict[str, tuple[int, ...]] = {
    "Slice": (1, 2, 3, 4), "Unsqueeze": (1,), "Squeeze": (1,), "Split": (1,),
    "Pad": (1, 2, 3), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,),
    "ReduceMin": (1,), "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,),
    "ReduceSumSquare": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "CumSum": (1,),
}
_SHAPE_OPS = frozenset({"Shape", "Size"})
_RELAXED = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", 2)
_ARENA_ALIGN = 256
USE_ARENA = os.environ.get("DIST_RT_CUDA_ARENA", "1") != "0"


class _Trace:
    """Allocator of the first capture: pool blocks, recording ``[size, step, ptr, last]``."""

    def __init__(self, pool: cupy.cuda.MemoryPool):
        self.pool = pool
        self.allocs: list[list[int]] = []
        self.step = 0

    def malloc(self, size: int) -> cupy.cuda.MemoryPointer:
        size = -(-max(int(size), 1) // _ARENA_ALIGN) * _ARENA_ALIGN
        mem = self.pool.malloc(size)
        self.allocs.append([size, self.step, mem.ptr, self.step])
        return mem

    def holds(self, array: Any, last: int) -> None:
        """``array`` (a layer output) lives until step ``last``: so does the block under it."""
        if not isinstance(array, cupy.ndarray) or array.size == 0:
            return
        ptr = array.data.ptr
        for alloc in reversed(self.allocs):  # the newest block at an address is the live one
            if alloc[2] <= ptr < alloc[2] + alloc[0]:
                alloc[3] = max(alloc[3], last)
                return


class _Arena:
    """Allocator of the second capture: the planned offsets of one block, in trace order."""

    def __init__(self, base: cupy.cuda.MemoryPointer, sizes: list[int], offsets: list[int]):
        self.base, self.sizes, self.offsets, self.next = base, sizes, offsets, 0

    def malloc(self, size: int) -> cupy.cuda.MemoryPointer:
        size = -(-max(int(size), 1) // _ARENA_ALIGN) * _ARENA_ALIGN
        k = self.next
        if k >= len(self.sizes) or self.sizes[k] != size:
            raise ExecutionError(f"arena capture: allocation {k} of {size} bytes differs from "
                                 f"the traced capture")
        self.next += 1
        return self.base + self.offsets[k]


def host_indices(layer: Any) -> tuple[int, ...]:
    """Input positions ``layer`` reads on the host (shape, axes, starts...)."""
    return tuple(layer.op.shape_inputs) + HOST_INPUTS.get(layer.op_type, ())


def signature_constants(layers: list, constants: set[str]) -> set[str]:
    """Names of tensors fixed by the input shapes and the weights alone.

    A tensor is one when its layer is ``Shape``/``Size``, or is deterministic, not a
    collective, and reads only constants and such tensors.
    """
    fixed: set[str] = set()
    for layer in layers:
        ins = [t for t in layer.inputs if t is not None]
        if layer.op_type in _SHAPE_OPS or (
                layer.op.deterministic and layer.op_type != "DistCollective" and ins
                and all(t.name in constants or t.name in fixed for t in ins)):
            fixed.update(t.name for t in layer.outputs)
    return fixed


@dataclass
class _Captured:
    graph: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    keep: list = field(default_factory=list)   # device arrays the graph reads
    fallback: str | None = None
    arena_bytes: int = 0                         # the planned block (0: pool-backed graph)
    arena_note: str | None = None                # why the arena is not used, if it is not


class CudaGraphRunner:
    """Captures and replays one ExecutionContext's layers (see the module docstring).

    Args:
        context: The :class:`dist_rt.runtime.context.ExecutionContext` to run.
        run_layer: The backend's ``run_layer(layer, inputs, rt)``.
    """

    def __init__(self, context: Any, run_layer: Any):
        self.context = context
        self.run_layer = run_layer
        self.layers = context._layers
        self.free_after = context._free_after
        net = context.engine.network
        self.host_constants = {t.name: t.weights.numpy() for t in net.constants
                               if t.weights.size <= HOST_INT_LIMIT
                               and np.dtype(t.dtype).kind in "iub"}
        self.fixed_names = signature_constants(self.layers, {t.name for t in net.constants})
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.pool = cupy.cuda.MemoryPool()
        self.graphs: dict[tuple, _Captured] = {}
        self._steps: list[tuple] | None = None
        self._last: dict[str, int] | None = None

    # -- public ------------------------------------------------------------------------------

    def run(self, feeds: Mapping[str, Any], copy_outputs: bool = True) -> dict[str, Any]:
        """Run once: replay the graph of this shape signature (capturing it first).

        Args:
            feeds: Checked input arrays (NumPy or CuPy).
            copy_outputs: True: host NumPy outputs. False: the graph's device output
                buffers, valid until the next call (the caller's stream is ordered after).

        Returns:
            Output name -> array, in the engine's output order.
        """
        key = tuple(sorted((n, tuple(a.shape), str(a.dtype)) for n, a in feeds.items()))
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(feeds)
        caller = cupy.cuda.get_current_stream()
        self.stream.wait_event(caller.record())
        if entry.fallback is not None:
            with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
                outs = self._eager(dict(feeds), record=None)
        else:
            with self.stream:
                for name, buf in entry.inputs.items():
                    src = feeds[name]
                    if isinstance(src, cupy.ndarray):
                        buf[...] = src
                    else:
                        buf.set(np.ascontiguousarray(src), stream=self.stream)
                entry.graph.launch(stream=self.stream)
            outs = entry.outputs
        names = [t.name for t in self.context.engine.network.outputs]
        if copy_outputs:
            host = {n: cupy.asnumpy(outs[n], stream=self.stream) for n in names}
            self.stream.synchronize()
            return host
        caller.wait_event(self.stream.record())
        return {n: outs[n] for n in names}

    def release(self) -> None:
        """Destroy the captured graphs and free the private pool.

        Runs before the caller destroys the communicator, because a graph that captured
        NCCL calls still refers to that communicator. (A 4-GPU run hung in teardown while
        such graphs were alive, 2026-11-21; this ordering is the suspected fix, not yet
        verified on GPUs.)
        """
        self.stream.synchronize()
        self.graphs.clear()
        self._steps = None
        self.pool.free_all_blocks()

    @property
    def arena_bytes(self) -> dict[tuple, int]:
        """Planned activation block per captured shape signature (0: pool-backed graph)."""
        return {key: e.arena_bytes for key, e in self.graphs.items()}

    @property
    def pool_bytes(self) -> int:
        """Bytes the private pool holds (the graphs' activations and inputs)."""
        return int(self.pool.total_bytes())

    # -- internals ---------------------------------------------------------------------------

    def _last_use(self) -> dict[str, int]:
        """Tensor name -> the step after which the eager loop drops it."""
        if self._last is None:
            self._last = {n: step for step, names in enumerate(self.free_after) for n in names}
        return self._last

    def _plan(self) -> list[tuple]:
        """Per layer, once: (layer, input names, host positions, output names, frees)."""
        if self._steps is None:
            self._steps = [
                (layer, [None if t is None else t.name for t in layer.inputs],
                 tuple(i for i in host_indices(layer) if i < len(layer.inputs)
                       and layer.inputs[i] is not None),
                 [t.name for t in layer.outputs], self.free_after[step])
                for step, layer in enumerate(self.layers)]
        return self._steps

    def _eager(self, feeds: dict[str, Any], record: dict | None,
               skip: bool = False, host: dict | None = None,
               trace: _Trace | None = None) -> dict[str, Any]:
        ctx = self.context
        values = dict(ctx._constants)
        values.update({n: ctx.backend.to_device(a) for n, a in feeds.items()})
        if record is not None and skip:
            values.update(record)
        host = {**self.host_constants, **(host or {})}
        run_layer, rt = self.run_layer, ctx._rt
        keep = record if record is not None else {}
        for step, (layer, in_names, host_pos, out_names, frees) in enumerate(self._plan()):
            if skip and all(n in self.fixed_names for n in out_names):
                continue
            if trace is not None:
                trace.step = step
            ins = [None if n is None else values[n] for n in in_names]
            for i in host_pos:
                value = host.get(in_names[i])
                if value is not None:
                    ins[i] = value
            try:
                outs = run_layer(layer, ins, rt)
            except RuntimeError as exc:  # CuPy's capture errors name no layer
                raise ExecutionError(f"layer '{layer.name}' ({layer.op_type}): {exc}") from exc
            if len(outs) < len(out_names):
                raise ExecutionError(f"layer '{layer.name}' ({layer.op_type}) returned "
                                     f"{len(outs)} outputs, expected {len(out_names)}")
            for name, out in zip(out_names, outs, strict=False):
                values[name] = out
                if record is not None and not skip and name in self.fixed_names:
                    record[name] = out
                if trace is not None:
                    trace.holds(out, self._last_use().get(name, len(self.layers)))
            for name in frees:
                if name not in keep:
                    values.pop(name, None)
        return {t.name: values[t.name] for t in ctx.engine.network.outputs}

    def _capture(self, feeds: Mapping[str, Any]) -> _Captured:
        entry = _Captured()
        ctx = self.context
        if ctx._world > 1 and getattr(ctx.communicator, "device", "cpu") != "cuda":
            entry.fallback = "a host communicator cannot be captured"
            return entry
        with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
            entry.inputs = {n: cupy.array(a) for n, a in feeds.items()}
            fixed: dict[str, Any] = {}
            self._eager(dict(entry.inputs), record=fixed)
            fixed = {n: (v if isinstance(v, cupy.ndarray) else cupy.asarray(v))
                     for n, v in fixed.items()}
            host = {n: cupy.asnumpy(v) for n, v in fixed.items()
                    if v.size <= HOST_INT_LIMIT and v.dtype.kind in "iub"}
            self.stream.synchronize()
            entry.keep = list(fixed.values())
            # Relaxed: the private pool may still cudaMalloc a block the warm-up run did not
            # need (skipped layers change the allocation order); nothing else is unsafe here.
            trace = _Trace(self.pool) if USE_ARENA else None
            self.stream.begin_capture(_RELAXED)
            try:
                with cupy.cuda.using_allocator(trace.malloc if trace else self.pool.malloc):
                    entry.outputs = self._eager(dict(entry.inputs), record=fixed, skip=True,
                                                host=host, trace=trace)
            except (DistRtError, RuntimeError, cupy.cuda.runtime.CUDARuntimeError) as exc:
                self._abort_capture()
                entry.fallback = f"capture failed: {exc}"
                return entry
            entry.graph = self.stream.end_capture()
            if trace is not None:
                self._capture_arena(entry, trace, fixed, host)
        return entry

    def _capture_arena(self, entry: _Captured, trace: _Trace, fixed: dict, host: dict) -> None:
        """Re-capture ``entry`` into one planned block; keep the pool graph if that fails.

        The check: both graphs run on the captured inputs and must agree (to the 16-bit
        rounding of a reordered reduction at most; a misplaced buffer is far off). With
        several ranks each decision is agreed over the communicator first, because a graph
        holding collectives must be launched by every rank or by none.
        """
        sizes = [a[0] for a in trace.allocs]
        offsets, total = best_fit(sizes, [(a[1], a[3]) for a in trace.allocs])
        entry.graph.launch(stream=self.stream)
        want = {n: cupy.array(v) for n, v in entry.outputs.items()
                if isinstance(v, cupy.ndarray)}
        base = self.pool.malloc(max(total, _ARENA_ALIGN))
        arena = _Arena(base, sizes, offsets)
        graph = outputs = None
        note = None
        self.stream.begin_capture(_RELAXED)
        try:
            with cupy.cuda.using_allocator(arena.malloc):
                outputs = self._eager(dict(entry.inputs), record=fixed, skip=True, host=host)
            graph = self.stream.end_capture()
        except (DistRtError, RuntimeError, cupy.cuda.runtime.CUDARuntimeError) as exc:
            self._abort_capture()
            note = f"arena capture failed: {exc}"
        if self._agree(note is None):
            graph.launch(stream=self.stream)
            for name, ref in want.items():
                got = outputs[name]
                same = (bool(cupy.allclose(got, ref, rtol=1e-2, atol=1e-2, equal_nan=True))
                        if ref.dtype.kind in "fc" else bool((got == ref).all()))
                if not same:
                    note = f"output '{name}' of the arena graph differs from the pool graph"
                    break
            if self._agree(note is None):
                entry.graph, entry.outputs, entry.arena_bytes = graph, outputs, total
                entry.keep.append(base)
                del want
                self.stream.synchronize()
                self.pool.free_all_blocks()  # the first capture's blocks
                return
        note = note or "another rank could not use its arena"
        entry.arena_note = f"pool-backed graph kept: {note}"
        del graph, outputs, base
        self.stream.synchronize()

    def _agree(self, ok: bool) -> bool:
        """True when ``ok`` holds on every rank (a host exchange; no device work)."""
        ctx = self.context
        if ctx._world <= 1:
            return ok
        return all(ctx.communicator.all_gather_object(bool(ok)))

    def _abort_capture(self) -> None:
        try:
            if self.stream.is_capturing():
                self.stream.end_capture()
        except (RuntimeError, cupy.cuda.runtime.CUDARuntimeError):
            pass  # an invalidated capture reports its error when ended; the eager path runs
        self.stream.synchronize()

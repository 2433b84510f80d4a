"""``ExecutionContext``: runs an Engine's layers in order on one backend.

Per call: check the feeds against the bindings, move them to the device, run each layer,
drop every intermediate right after its last reader, copy the outputs to host NumPy. State
that must persist across calls (a KV cache) belongs in ``RunContext.state``, which lives as
long as the context, not in the per-call value table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import (
    CommunicatorMismatchError,
    DeviceError,
    ExecutionError,
    InputError,
    PlanMismatchError,
    where,
)
from dist_rt.runtime.backends import get_backend
from dist_rt.runtime.inputs import check_shape


class ExecutionContext:
    """Runs one engine (TensorRT's ``IExecutionContext``); a context manager.

    Teardown order: ``close()`` drops device arrays first; the communicator belongs to the
    caller and is closed by the caller after every context that uses it (NCCL's destroy is
    collective).

    Args:
        engine: The :class:`dist_rt.engine.Engine` to run.

    Attributes:
        profiling: When True, ``execute`` times every layer into ``layer_times``.
        layer_times: Layer name -> total seconds over profiled calls.
        collective_seconds: Seconds spent in DistCollective layers over profiled calls.
        profile_index: Index of the optimization profile whose bounds inputs must respect.
    """

    def __init__(self, engine: Any):
        self.engine = engine
        self.backend = get_backend(engine.device)
        if engine.device != "cpu" and self.backend.device_arch() != engine.device_arch:
            raise DeviceError(f"engine was built for {engine.device} arch {engine.device_arch}, "
                              f"this device is {self.backend.device_arch()}; rebuild it here")
        net = engine.network
        net.toposort()
        self._layers = list(net.layers)
        # Sequence (list) and optional (None or value) bindings; every other one is a tensor.
        self._kinds = {t.name: t.kind for t in [*net.inputs, *net.outputs]
                       if t.kind != "tensor"}
        self._plain = not self._kinds and not any(
            t.kind != "tensor" for lay in net.layers for t in lay.outputs)
        graph_safe = getattr(self.backend.module, "graph_safe", None)
        # Networks with layers the device cannot run (host fallbacks) are never captured.
        self._plain = self._plain and (graph_safe is None or graph_safe(net))
        self._rank, self._world = engine.rank, engine.world_size
        self._constants = self.backend.constants_to_device(net)
        self._prefetch = self.backend.prefetch_targets(net, self._constants)
        keep = {t.name for t in net.outputs} | set(self._constants)
        last: dict[str, int] = {}
        for step, layer in enumerate(self._layers):
            for t in layer.inputs:
                if t is not None:
                    last[t.name] = step
        self._free_after: list[list[str]] = [[] for _ in self._layers]
        for name, step in last.items():
            if name not in keep:
                self._free_after[step].append(name)
        self.communicator: Any = None
        self._state: dict = {}
        self._rt = self._make_rt()
        self.profiling = False
        self.layer_times: dict[str, float] = {}
        self.collective_seconds = 0.0
        self.profile_index = 0
        # CUDA graphs (backends with execute_network); off: DIST_RT_CUDA_GRAPH=0 / --no-cuda-graph
        self.use_cuda_graph = os.environ.get("DIST_RT_CUDA_GRAPH", "1") != "0"
        self._closed = False

    def _make_rt(self):
        return self.backend.make_run_context(communicator=self.communicator, rank=self._rank,
                                             world_size=self._world, state=self._state,
                                             l2_prefetch=self._prefetch or None)

    def _prefix(self) -> str:
        return where(self._rank if self._world > 1 else None, self._world)

    # -- setup -----------------------------------------------------------------------------

    def set_communicator(self, comm: Any) -> None:
        """Attach the communicator DistCollective layers use.

        Collective when ``comm.size > 1``: every rank must call it. The ranks exchange
        (engine rank, world size, plan hash) first, so a mismatch on any rank raises on every
        rank (nobody is left waiting in the first collective of ``execute``).

        Raises:
            CommunicatorMismatchError: ``comm.size``/``comm.rank`` differ from the engine's
                world size/rank (on any rank), or a device communicator is given to a CPU
                engine.
            PlanMismatchError: Ranks hold engines of different plans (names the ranks).
        """
        size, rank = getattr(comm, "size", None), getattr(comm, "rank", None)
        gather = getattr(comm, "all_gather_object", None)
        if isinstance(size, int) and size > 1 and gather is not None:
            mine = (self._rank, self._world, str(self.engine.plan_hash))
            peers = [tuple(p) for p in gather(list(mine))]
            wrong = [r for r, (er, ew, _) in enumerate(peers) if (er, ew) != (r, size)]
            if wrong:
                got = ", ".join(f"rank {r} holds engine rank {peers[r][0]} of {peers[r][1]}"
                                for r in wrong)
                raise CommunicatorMismatchError(
                    f"{self._prefix()}communicator of {size} ranks does not fit the engines: "
                    f"{got} (load each rank's own plan file, or launch as many ranks as the "
                    f"engines were built for)")
            differ = [r for r, p in enumerate(peers) if p[2] != peers[0][2]]
            if differ:
                raise PlanMismatchError(
                    f"{self._prefix()}rank(s) {differ} hold engines of another plan than rank "
                    f"0 (plan hash {', '.join(p[2][:12] for p in peers)}); rebuild or reload "
                    f"every rank's engine from the same build")
        if size != self._world or rank != self._rank:
            raise CommunicatorMismatchError(
                f"{self._prefix()}communicator is rank {rank} of {size}, the engine is rank "
                f"{self._rank} of {self._world} (load the plan file of this rank, or launch "
                f"{self._world} ranks)")
        if getattr(comm, "device", "cpu") == "cuda" and self.engine.device == "cpu":
            raise CommunicatorMismatchError(f"{self._prefix()}a CUDA communicator cannot move "
                                            f"the host arrays of a CPU engine")
        self.communicator = comm
        self._rt = self._make_rt()

    # -- run ---------------------------------------------------------------------------------

    def check_inputs(self, feeds: Mapping[str, Any]) -> dict[str, int]:
        """Check ``feeds`` against the input bindings without running anything.

        Returns:
            The value of every symbolic dim (e.g. ``{"batch": 2, "seq": 16}``).

        Raises:
            InputError: Unknown or missing names, wrong dtype, rank or dims (names the input,
                expected vs got), or a shape outside the active profile.
        """
        if not isinstance(feeds, Mapping):
            raise InputError(f"{self._prefix()}inputs must be a dict of name -> array, got "
                             f"{type(feeds).__name__}")
        expected = [n for n, _, _ in self.engine.inputs]
        unknown = sorted(set(feeds) - set(expected))
        missing = [n for n in expected if n not in feeds]
        if unknown or missing:
            parts = ([f"unknown input(s) {unknown}"] if unknown else []) + \
                    ([f"missing input(s) {missing}"] if missing else [])
            raise InputError(f"{self._prefix()}{'; '.join(parts)}; the engine's inputs are "
                             f"{expected}")
        dims: dict[str, tuple[int, str]] = {}
        for name, dtype, shape in self.engine.inputs:
            value = feeds[name]
            if name in self._kinds:
                self._check_container(name, self._kinds[name], value, dtype)
                continue
            if not hasattr(value, "dtype") or not hasattr(value, "shape"):
                raise InputError(f"{self._prefix()}input '{name}': expected an array, got "
                                 f"{type(value).__name__}")
            if np.dtype(value.dtype) != dtype:
                raise InputError(f"{self._prefix()}input '{name}': dtype {value.dtype}, "
                                 f"expected {dtypes.name_of(dtype)}")
            got = tuple(int(d) for d in value.shape)
            check_shape(name, shape, got, dims, self._prefix())
            self._check_profile(name, got)
        return {k: v for k, (v, _) in dims.items()}

    def _check_container(self, name: str, kind: str, value: Any, dtype: Any) -> None:
        """Check a sequence (list of arrays) or optional (None, array or list) feed."""
        if kind == "optional" and value is None:
            return
        items = value if isinstance(value, (list, tuple)) else [value]
        if kind == "sequence" and not isinstance(value, (list, tuple)):
            raise InputError(f"{self._prefix()}input '{name}': expected a sequence (a list "
                             f"of arrays), got {type(value).__name__}")
        for i, item in enumerate(items):
            if not hasattr(item, "dtype") or not hasattr(item, "shape"):
                raise InputError(f"{self._prefix()}input '{name}': element {i} is a "
                                 f"{type(item).__name__}, expected an array")
            if dtype is not None and np.dtype(item.dtype) != dtype:
                raise InputError(f"{self._prefix()}input '{name}': element {i} has dtype "
                                 f"{item.dtype}, expected {dtypes.name_of(dtype)}")

    def _check_profile(self, name: str, got: tuple[int, ...]) -> None:
        if not self.engine.profiles:
            return
        profile = self.engine.profiles[self.profile_index]
        if name not in profile.min:
            return
        lo, hi = profile.min[name], profile.max[name]
        if any(not a <= g <= b for a, g, b in zip(lo, got, hi, strict=True)):
            raise InputError(f"{self._prefix()}input '{name}': shape {got} is outside "
                             f"profile '{profile.name}' bounds min {lo}, max {hi}")

    def execute(self, feeds: Mapping[str, Any],
                copy_outputs: bool = True) -> dict[str, np.ndarray]:
        """Run the engine once.

        Args:
            feeds: Input name -> array (NumPy; CuPy too on the CUDA backend).
            copy_outputs: False returns the backend's arrays (CuPy on CUDA) without the
                device-to-host copy; with a CUDA graph they are valid until the next call.

        Returns:
            Output name -> host NumPy array, in the engine's output order.

        Raises:
            InputError: Feeds do not match the bindings.
            CommunicatorMismatchError: A multi-rank engine has no communicator attached.
            ExecutionError: A layer failed (names the layer, op and rank).
        """
        if self._closed:
            raise ExecutionError(f"{self._prefix()}execute() on a closed ExecutionContext")
        self.check_inputs(feeds)
        if self._world > 1 and self.communicator is None:
            raise CommunicatorMismatchError(
                f"{self._prefix()}the engine is rank {self._rank} of {self._world}; attach a "
                f"communicator with set_communicator() before execute()")
        backend, rt = self.backend, self._rt
        run_graph = getattr(backend.module, "execute_network", None)
        if (run_graph is not None and self.use_cuda_graph and not self.profiling
                and self._plain):
            return run_graph(self, feeds, copy_outputs)  # CUDA graph capture/replay
        values = dict(self._constants)
        for name, value in feeds.items():
            values[name] = self._device(value)
        for step, layer in enumerate(self._layers):
            ins = [None if t is None else values[t.name] for t in layer.inputs]
            if self.profiling:
                backend.synchronize()
                t0 = time.perf_counter()
            outs = backend.run_layer(layer, ins, rt)
            if self.profiling:
                backend.synchronize()
                dt = time.perf_counter() - t0
                self.layer_times[layer.name] = self.layer_times.get(layer.name, 0.0) + dt
                if layer.op_type in ("DistCollective", "AllReduceAddRMSNorm"):
                    self.collective_seconds += dt
            if len(outs) < len(layer.outputs):
                raise ExecutionError(f"{where(self._rank, self._world, layer.name, layer.op_type)}"
                                     f"returned {len(outs)} outputs, expected "
                                     f"{len(layer.outputs)}")
            for t, out in zip(layer.outputs, outs, strict=False):
                values[t.name] = out
            for name in self._free_after[step]:
                values.pop(name, None)
        if not copy_outputs:
            return {t.name: values[t.name] for t in self.engine.network.outputs}
        return {t.name: self._host(values[t.name], feeds) for t in self.engine.network.outputs}

    def _device(self, value: Any) -> Any:
        if value is None or isinstance(value, (list, tuple)):  # optional, sequence
            return None if value is None else [self._device(v) for v in value]
        return self.backend.to_device(value if self.backend.name != "cpu"
                                      else np.asarray(value))

    def _host(self, value: Any, feeds: Mapping[str, Any]) -> Any:
        if value is None or isinstance(value, (list, tuple)):  # optional, sequence
            return None if value is None else [self._host(v, feeds) for v in value]
        out = self.backend.to_host(value)
        # Never hand back the caller's own array or a read-only view of the weights.
        if any(out is f for f in feeds.values()) or not out.flags.writeable:
            out = np.array(out, copy=True)
        return out

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release device arrays held by the context (the communicator stays the caller's).

        Captured CUDA graphs go first: those holding NCCL calls should be destroyed before
        the caller destroys the communicator.
        """
        runner = getattr(self, "_cuda_graph_runner", None)
        if runner is not None:
            runner.release()
            self._cuda_graph_runner = None
        self._constants = {}
        self._prefetch.clear()  # the run context holds this dict: drop its weight references
        self._state.clear()
        self.communicator = None
        self._closed = True

    def __enter__(self) -> ExecutionContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

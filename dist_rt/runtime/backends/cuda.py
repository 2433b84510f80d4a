"""The CUDA backend: CuPy arrays, hot ops on fused kernels, the rest through ``rt.xp``.

Every op's reference ``_run`` is written against ``rt.xp``, so with ``xp = cupy`` all ops
run on the GPU unchanged; :mod:`dist_rt.runtime.cuda.kernels` overrides the hot ones
(attention, RMSNorm, softmax, SiLU) with fused NVRTC kernels that compute in float32 for
16-bit tensors. Matrix products call cuBLAS directly (:mod:`dist_rt.runtime.cuda.cublas`:
tensor cores for fp16/bf16, float32 accumulation), because CuPy's own cuBLAS wrappers refuse
to run while a stream is being captured.

``execute_network`` runs a whole engine as a captured CUDA graph per input-shape signature
(:mod:`dist_rt.runtime.cuda.graph`); ``ExecutionContext`` delegates to it unless graphs are
turned off (``ExecutionContext.use_cuda_graph = False`` or ``DIST_RT_CUDA_GRAPH=0``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cupy
import numpy as np

from dist_rt import dtypes
from dist_rt.ops import RunContext
from dist_rt.runtime.cuda import kernels, l2_prefetch, timing
from dist_rt.runtime.cuda import tactics as cuda_tactics
from dist_rt.runtime.cuda.graph import CudaGraphRunner, host_indices
from dist_rt.runtime.weight_layout import linear_weights  # noqa: F401 - backend interface

name = "cuda"
xp = cupy


def is_available() -> bool:
    """True when CuPy sees at least one CUDA device."""
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except cupy.cuda.runtime.CUDARuntimeError:
        return False


def device_arch() -> str:
    """The current device's architecture, e.g. ``"sm_90"``."""
    return f"sm_{cupy.cuda.Device().compute_capability}"


def cache_bytes() -> int:
    """The current device's L2 cache size in bytes (tactic timing keeps operands out of it)."""
    return int(cupy.cuda.Device().attributes.get("L2CacheSize", 0))


def time_calls(call: Any, calls: int, repeats: int) -> list[float] | None:
    """Device-clock milliseconds per call of back-to-back calls (see
    :func:`dist_rt.runtime.cuda.timing.time_calls`); None when they cannot be captured."""
    return timing.time_calls(call, calls, repeats)


def to_device(array: Any) -> Any:
    """A device array: CuPy arrays are returned as they are, anything else is copied.

    Arrays of a dtype CuPy cannot hold (fp8, fp4, int4, strings) stay on the host; the
    layers that read them run there (see :func:`run_layer`).
    """
    if isinstance(array, cupy.ndarray):
        return array
    host = np.asarray(array)
    return cupy.asarray(host) if device_dtype_ok(host.dtype) else host


def store_transposed(array: Any) -> Any:
    """A device copy of ``array`` (K, N) stored (N, K), returned as its (K, N) ``.T`` view
    (for the :func:`linear_weights`; host-only arrays pass through)."""
    return cupy.ascontiguousarray(array.T).T if isinstance(array, cupy.ndarray) else array


def prefetch_targets(network: Any, constants: dict[str, Any]) -> dict[str, tuple[Any, int]]:
    """Layer name -> (weight, bytes) its decode GEMV warms in L2 for the next GEMV
    (:mod:`dist_rt.runtime.cuda.l2_prefetch`)."""
    return l2_prefetch.targets(network, constants)


def to_host(array: Any) -> np.ndarray:
    """A host NumPy copy of a device array (NumPy arrays pass through)."""
    return cupy.asnumpy(array) if isinstance(array, cupy.ndarray) else np.asarray(array)


def synchronize() -> None:
    """Wait for the work queued on the current stream."""
    cupy.cuda.get_current_stream().synchronize()


def make_run_context(**kw: Any) -> RunContext:
    """The RunContext layers see: ``xp = cupy`` and the current stream."""
    return RunContext(xp=cupy, backend=name, stream=cupy.cuda.get_current_stream(), **kw)


_DEVICE_DTYPES: dict[np.dtype, bool] = {}


def device_dtype_ok(dtype: Any) -> bool:
    """True when CuPy can hold arrays of ``dtype`` (not fp8, fp4, int4/int2, strings...)."""
    dt = np.dtype(dtype)
    ok = _DEVICE_DTYPES.get(dt)
    if ok is None:
        try:
            cupy.empty(1, dt)
            # ml_dtypes' bfloat16 has kind "V", but CuPy holds it (and the kernels use it).
            ok = dt.kind not in "OUSV" or dt == dtypes.bfloat16
        except (TypeError, ValueError, NotImplementedError):
            ok = False
        _DEVICE_DTYPES[dt] = ok
    return ok


#: id(layer) -> (layer, tactic name, host input positions, fused wrapper or None, host
#: outputs): the per-layer dispatch decisions, made once instead of on every call (the layer
#: is kept so an id is never reused; the tactic is kept so recording another one redoes the
#: decision).
_DISPATCH: dict[int, tuple[Any, Any, tuple[int, ...], Any, bool]] = {}
_DISPATCH_LIMIT = 200_000


def dispatch(layer: Any) -> tuple[tuple[int, ...], Any, bool]:
    """``(host input positions, fused kernel wrapper or None, host outputs)``, cached.

    The wrapper is the layer's recorded tactic (``layer.metadata["tactic"]``) when it has a
    non-default one, else the registered fused kernel. "Host outputs" is True when an output
    has a dtype the device cannot hold.
    """
    tactic = layer.metadata.get("tactic")
    entry = _DISPATCH.get(id(layer))
    if entry is None or entry[0] is not layer or entry[1] != tactic:
        if len(_DISPATCH) > _DISPATCH_LIMIT:
            _DISPATCH.clear()
        fused = cuda_tactics.wrapper(layer, tactic) or kernels.lookup(layer)
        host_outputs = any(t.dtype is not None and not device_dtype_ok(t.dtype)
                           for t in layer.outputs)
        entry = _DISPATCH[id(layer)] = (layer, tactic, host_indices(layer), fused, host_outputs)
    return entry[2], entry[3], entry[4]


def run_layer(layer: Any, inputs: Sequence[Any], rt: RunContext) -> list[Any]:
    """Run one layer: its fused kernel when one is registered and accepts the inputs.

    Host NumPy inputs (small shape values) stay on the host where the op reads them as
    shapes and are uploaded everywhere else. Layers whose dtypes CuPy cannot hold run on
    the host; their outputs go back to the device when the device can hold them.
    """
    host, fused, host_outputs = dispatch(layer)
    # Layers that read or write a dtype the device cannot hold (fp8/fp4/int4 casts, string
    # ops) run on the host with the NumPy reference, as TensorRT falls back for such types.
    if host_outputs or any(isinstance(a, np.ndarray) and not device_dtype_ok(a.dtype)
                           for a in inputs):
        host_rt = RunContext(xp=np, backend="cpu", communicator=rt.communicator, rank=rt.rank,
                             world_size=rt.world_size, state=rt.state)
        outs = layer.op.run(layer, [None if a is None else to_host(a) for a in inputs], host_rt)
        return [cupy.asarray(o) if isinstance(o, np.ndarray) and device_dtype_ok(o.dtype)
                else o for o in outs]
    ins = [a if a is None or isinstance(a, cupy.ndarray) or i in host else cupy.asarray(a)
           for i, a in enumerate(inputs)]
    if fused is not None:
        out = fused(layer, ins, rt)
        if out is not None:
            return out
    return layer.op.run(layer, ins, rt)


def graph_safe(network: Any) -> bool:
    """True when every tensor of ``network`` can live on the device (so it can be captured)."""
    tensors = [*network.inputs, *network.constants,
               *(t for layer in network.layers for t in layer.outputs)]
    return all(t.dtype is None or device_dtype_ok(t.dtype) for t in tensors)


def execute_network(context: Any, feeds: Mapping[str, Any],
                    copy_outputs: bool = True) -> dict[str, Any]:
    """Run a whole engine through its context's CUDA-graph runner (made on first use).

    Args:
        context: The ExecutionContext (its feeds are already checked).
        feeds: Input name -> NumPy or CuPy array.
        copy_outputs: False returns the device output buffers (valid until the next call).

    Returns:
        Output name -> array.
    """
    runner = getattr(context, "_cuda_graph_runner", None)
    if runner is None:
        runner = context._cuda_graph_runner = CudaGraphRunner(context, run_layer)
    return runner.run(feeds, copy_outputs)


def graph_pool_bytes(context: Any) -> int:
    """Bytes held by a context's CUDA-graph pool (0 before the first graph run)."""
    runner = getattr(context, "_cuda_graph_runner", None)
    return 0 if runner is None else runner.pool_bytes

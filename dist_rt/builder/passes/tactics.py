"""Tactic selection: time each layer's implementations on the target device, keep the fastest.

For every layer with more than one applicable tactic (:mod:`dist_rt.builder.tactics`) the
pass builds a :func:`signature` (op, domain, attributes, input shapes and dtypes, backend,
device arch, dist_rt version) and looks it up in the timing cache; on a miss it runs every
tactic on random inputs of the layer's static shapes (constants use their real weights),
one warm-up call then the median of a few timed samples, each a run of back-to-back calls
lasting about :data:`SAMPLE_MS` (so launch latency and synchronization do not hide
microsecond differences), rotating through copies of the inputs so they are not served from
the L2 cache, and stores the times. A backend with a device clock times the calls there
(``backend.time_calls``: CUDA captures them into a graph and times its replays with events,
as the engine runs), since host time over Python dispatch measures the dispatch, not the
kernel; otherwise each sample is host time between two synchronizations. Equal signatures are
timed once per build (a transformer's blocks share them), and a warm cache file skips
timing altogether.

The choice goes to ``layer.metadata["tactic"]`` (what the backends read) and
``state.tactics`` (the engine's ``tactics``: the plan file and ``python -m dist_rt.inspect``
show it). A non-default tactic must beat the default by :data:`MIN_GAIN`, so timing noise
does not swap implementations for nothing.

Shapes: the builder's ``input_shapes``, else the first profile's *opt* shapes (the shapes to
optimize for), else the network's static shapes. A layer whose input shapes stay symbolic
keeps the default path and is counted in the summary.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

import dist_rt
from dist_rt.builder import tactics as _tactics
from dist_rt.builder.passes import BuildState, shaped_copy
from dist_rt.builder.timing_cache import TimingCache
from dist_rt.errors import DistRtError
from dist_rt.network import Layer, Network

#: A non-default tactic must be at least this much faster than the default to be chosen.
MIN_GAIN = 0.05
#: Timed samples per tactic (after a warm-up call); fewer when one call is slow.
REPEATS = 5
#: Back-to-back calls per sample make it last about this long (ms), so one host
#: synchronization and the launch latency do not swamp a kernel of a few microseconds.
SAMPLE_MS = 1.0
#: At most this many calls per sample.
MAX_CALLS = 200
#: Aim for about this many milliseconds of timed calls per tactic.
BUDGET_MS = 20.0
#: Most input copies rotated through so that repeated calls do not find their operands in
#: the device's last-level cache (see :func:`_rotation`).
MAX_COPIES = 16


def _static_shapes(network: Network, state: BuildState) -> dict[str, tuple[int, ...]]:
    """Tensor name -> static shape for the shapes to optimize for (symbolic tensors absent)."""
    try:
        probe = shaped_copy(network, state, "opt")
    except DistRtError:
        probe = network  # the given shapes do not propagate: use the declared ones only
    return {name: tuple(t.shape) for name, t in probe.tensors.items()
            if t.shape is not None and all(isinstance(d, int) for d in t.shape)}


def _attr_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]
        return f"array:{value.dtype}{list(value.shape)}:{digest}"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_attr_json(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)  # subgraphs and the like: their repr names them well enough


def signature(layer: Layer, specs: Sequence[_tactics.Spec], device: str, arch: str,
              transposed: Collection[int] = ()) -> str:
    """The timing-cache key of ``layer`` with these input specs on this device.

    Example: ``MatMul(float32[8,64,256],float32[256,512]){}@cpu/x86_64/dist_rt-0.1.0``.
    Inputs the device stores transposed (``transposed``: their positions) carry ``^T``:
    cuBLASLt's algorithm list, and so what ``lt<i>`` names, depends on the layout.
    """
    ins = ",".join("-" if s is None else
                   f"{s[1].name}{list(s[0])}{'^T' if i in transposed else ''}".replace(" ", "")
                   for i, s in enumerate(specs))
    attrs = json.dumps({k: _attr_json(v) for k, v in sorted(layer.attributes.items())},
                       sort_keys=True, separators=(",", ":"))
    domain = "" if layer.domain in ("", "ai.onnx") else f"{layer.domain}::"
    return f"{domain}{layer.op_type}({ins}){attrs}@{device}/{arch}/dist_rt-{dist_rt.__version__}"


def _random_inputs(layer: Layer, specs: Sequence[_tactics.Spec], backend: Any,
                   rng: np.random.Generator, network: Network) -> list[Any]:
    """Device inputs for timing: constants as the engine will hold them, else random."""
    constants = backend.constants_to_device(
        network, [t.name for t in layer.inputs if t is not None and t.weights is not None])
    arrays = []
    for t, spec in zip(layer.inputs, specs, strict=True):
        if spec is None:
            arrays.append(None)
            continue
        shape, dtype = spec
        if t.weights is not None:
            arrays.append(constants[t.name])
            continue
        if dtype.kind == "f":
            host = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind == "b":
            host = rng.random(shape) > 0.1
        else:
            host = np.zeros(shape, dtype)
        arrays.append(backend.to_device(host))
    return arrays


def time_tactics(layer: Layer, candidates: Sequence[_tactics.Tactic], inputs: Sequence[Any],
                 backend: Any) -> dict[str, float]:
    """Median milliseconds of each tactic on ``inputs`` (tactics that decline are left out).

    The default tactic runs the backend's ordinary path (``backend.run_layer`` with no tactic
    recorded on the layer).
    """
    rt = backend.make_run_context()
    saved = layer.metadata.pop("tactic", None)
    times: dict[str, float] = {}
    sets, turn = _rotation(inputs, backend), [0]
    try:
        for tactic in candidates:
            def call(tactic=tactic):
                turn[0] += 1
                ins = sets[turn[0] % len(sets)]
                if tactic.run is None:
                    return backend.run_layer(layer, ins, rt)
                return tactic.run(layer, ins, rt)

            try:
                if call() is None:  # warm-up: compiles, allocates, fills caches
                    continue  # declined these inputs
            except (DistRtError, ValueError, TypeError, IndexError, MemoryError):
                continue  # cannot run here (e.g. a cuBLAS algo the GPU lacks): not a candidate
            one_ms = _sample(call, 1, backend)
            calls = max(1, min(MAX_CALLS, int(SAMPLE_MS / max(one_ms, 1e-4))))
            repeats = max(1, min(REPEATS, int(BUDGET_MS / max(one_ms * calls, 1e-3))))
            timer = getattr(backend, "time_calls", None)
            samples = timer(call, calls, repeats) if timer is not None else None
            if samples is None:  # no device clock (CPU), or the calls cannot be captured
                samples = [_sample(call, calls, backend) for _ in range(repeats)]
            times[tactic.name] = statistics.median(samples)
    finally:
        if saved is not None:
            layer.metadata["tactic"] = saved
    return times


def _rotation(inputs: Sequence[Any], backend: Any) -> list[Sequence[Any]]:
    """``inputs`` and copies of them, together at least twice the backend's cache.

    Back-to-back calls on one set of operands find them in the GPU's L2 (50 MiB on H100:
    the weights of a decode-sized GEMM fit), which favours other kernels than the model,
    where every layer reads its weights from HBM; at 1x128 the L2-warm picks made the 1B
    Llama 9% slower than the defaults. Rotating through copies keeps every call cold.
    """
    cache = int(getattr(backend, "cache_bytes", lambda: 0)())
    size = sum(int(getattr(a, "nbytes", 0)) for a in inputs if a is not None)
    if cache <= 0 or size <= 0:
        return [inputs]
    copies = min(MAX_COPIES, -(-2 * cache // size))
    return [inputs] + [[None if a is None else a.copy(order="K") for a in inputs]
                       for _ in range(copies - 1)]


def _sample(call, calls: int, backend: Any) -> float:
    """Milliseconds per call of ``calls`` back-to-back calls between two synchronizations."""
    backend.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    backend.synchronize()
    return (time.perf_counter() - t0) * 1e3 / calls


def choose(times: dict[str, float]) -> str:
    """The fastest tactic; the default unless another beats it by :data:`MIN_GAIN`."""
    best = min(times, key=times.get)
    default = times.get(_tactics.DEFAULT)
    if default is not None and times[best] > default * (1.0 - MIN_GAIN):
        return _tactics.DEFAULT
    return best


def run(network: Network, state: BuildState) -> str:
    """Choose a tactic for every layer that has a choice (see the module docstring).

    Args:
        network: The final network; chosen tactics go to ``layer.metadata["tactic"]``.
        state: Build state; receives ``tactics``; its config names the timing cache.

    Returns:
        A summary line (layers chosen, cache hits, signatures timed, symbolic layers).

    Raises:
        BuildError: The timing cache file cannot be written.
    """
    from dist_rt.runtime.backends import get_backend, resolve_device  # noqa: PLC0415

    device = resolve_device(state.config.device)
    backend = get_backend(device)
    arch = backend.device_arch()
    cache = TimingCache(state.config.timing_cache, device, arch)
    table = _tactics.registry(device)
    shapes: dict[str, tuple[int, ...]] | None = None
    transposed: set[str] | None = None
    rng = np.random.default_rng(0)
    chosen = hits = timed = symbolic = 0
    for layer in network.layers:
        if len(_tactics.tactics_for(device, layer)) < 2:
            continue
        if shapes is None:  # inferred once, and only when some layer has a choice
            shapes = _static_shapes(network, state) if table else {}
        if any(t is not None and t.name not in shapes for t in layer.inputs):
            symbolic += 1
            continue
        specs = [None if t is None else (shapes[t.name], t.dtype) for t in layer.inputs]
        candidates = _tactics.applicable(device, layer, specs)
        if len(candidates) < 2:
            continue
        if transposed is None:
            transposed = backend.transposed_constants(network)
        key = signature(layer, specs, device, arch,
                        [i for i, t in enumerate(layer.inputs)
                         if t is not None and t.name in transposed])
        entry = cache.get(key)
        if entry is not None and any(t.name == entry["tactic"] for t in candidates):
            hits += 1
            choice = entry["tactic"]
        else:
            times = time_tactics(layer, candidates,
                                 _random_inputs(layer, specs, backend, rng, network), backend)
            if not times:
                continue
            choice = choose(times)
            cache.put(key, choice, times)
            timed += 1
        layer.metadata["tactic"] = choice
        # The shapes it won at: the CUDA backend runs it only there (another shape of a
        # dynamic profile may favour another tactic, and cuBLASLt's ``lt<i>`` would even name
        # another, untimed kernel).
        layer.metadata["tactic_shapes"] = [None if s is None else list(s[0]) for s in specs]
        state.tactics[layer.name] = choice
        chosen += 1
    cache.save()
    where = f", cache {cache.path} ({len(cache)} entries)" if cache.path else ""
    ignored = f", cache ignored: {cache.ignored}" if cache.ignored else ""
    return (f"{chosen} layers: {hits} cached, {timed} timed, {symbolic} symbolic"
            f"{where}{ignored}")

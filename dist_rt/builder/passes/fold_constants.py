"""Constant folding: layers whose outputs are known at build time become constants.

Two sources of known values:

1. ``Network.infer_shapes`` propagates values through shape arithmetic and small constant
   subgraphs (``Shape -> Gather -> Concat -> Reshape``), including dims that are static.
2. Layers whose inputs are all constants (a transposed or reshaped weight, a dequantized
   table) are run here once with the NumPy reference, whatever their size, unless the result
   would be more than twice the bytes of their inputs (an ``Expand`` of a constant to the
   batch shape is cheaper to compute than to store).

Non-deterministic or side-effecting ops (collectives, random) are never folded.

Source weights a folded layer read are recorded (``refit.record_folded``): the folded
constant is a copy a refit cannot update, so refit names the layer and asks for a rebuild.
"""

from __future__ import annotations

import numpy as np

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes._util import remove_and_prune
from dist_rt.builder.refit import record_folded
from dist_rt.errors import DistRtError
from dist_rt.network import Layer, Network
from dist_rt.ops import RunContext
from dist_rt.weights import Weights


def _to_constant(layer: Layer, values: list[np.ndarray]) -> None:
    for t, value in zip(layer.outputs, values, strict=True):
        value = np.asarray(value)
        if t.dtype is not None and value.dtype != t.dtype:
            value = value.astype(t.dtype)
        # Detach the tensor from its producer first, so remove_layers keeps it.
        t.producer = None
        t.weights = Weights(np.ascontiguousarray(value))
        t.dtype, t.shape = value.dtype, tuple(int(d) for d in value.shape)


def _run_on_constants(layer: Layer) -> list[np.ndarray] | None:
    ins = layer.inputs
    if not ins or any(t is not None and not t.is_constant for t in ins):
        return None
    arrays = [None if t is None else t.weights.numpy() for t in ins]
    try:
        outs = layer.op.run(layer, arrays, RunContext())
    except DistRtError:
        return None  # leave it to run time, where the error names the inputs
    budget = 2 * sum(a.nbytes for a in arrays if a is not None)
    if len(outs) != len(layer.outputs) or sum(np.asarray(o).nbytes for o in outs) > budget:
        return None
    return [np.asarray(o) for o in outs]


def run(network: Network, state: BuildState) -> str:
    """Replace layers whose every output value is known with constants, then prune."""
    known = network.infer_shapes()
    input_names = {t.name for t in network.inputs}
    folded = []
    for layer in network.layers:
        if (not layer.outputs or not layer.op.deterministic
                or any(t.name in input_names for t in layer.outputs)):
            continue
        if all(t.name in known for t in layer.outputs):
            values = [known[t.name] for t in layer.outputs]
        else:
            values = _run_on_constants(layer)
            if values is None:
                continue
        record_folded(network, layer)
        _to_constant(layer, values)
        folded.append(layer)
    pruned = remove_and_prune(network, folded)
    return f"folded {len(folded)} layers, pruned {pruned}"

"""Common-subexpression elimination: layers that compute the same thing become one.

Two layers are the same computation when they have the same op type, domain and opset, read
the same input tensors in the same order and carry equal attributes. Exporters emit many of
these: one ``Shape(x)`` per use, one ``Gather(shape, 0)`` per reshape, a ``Transpose`` of the
same key for every head group. Small constants holding equal values (the ``0`` and ``[1]``
index tensors each of those chains owns) are merged first, so that their readers then compare
equal too.

Never merged:

* non-deterministic ops (``Op.deterministic`` is False: ``DistCollective``, random ops):
  two all-reduces of one tensor are two collective calls every rank must make in the same
  order, and two ``RandomNormal`` draw different numbers;
* layers whose output is a network output (the binding name must survive).

Layers are visited in topological order with a rename map, so a whole duplicated chain
collapses in one sweep (each layer is compared after its inputs were renamed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes._util import binding_names
from dist_rt.network import Network, Tensor

#: Constants up to this many elements are merged by value (bigger ones are real weights,
#: where hashing costs time and equal weights are rare).
MAX_CONSTANT_ELEMENTS = 64


def _key_value(value: Any) -> Any:
    """A hashable form of an attribute value (arrays by dtype, shape and bytes)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, np.generic):
        return _key_value(value.item())
    if isinstance(value, (list, tuple)):
        return tuple(_key_value(v) for v in value)
    if isinstance(value, float):
        return ("float", repr(value))  # NaN != NaN would defeat the dict lookup
    if isinstance(value, dict):
        return tuple(sorted((k, _key_value(v)) for k, v in value.items()))
    return value


def _merge_constants(network: Network, keep: set[str]) -> dict[str, Tensor]:
    rename: dict[str, Tensor] = {}
    seen: dict[Any, Tensor] = {}
    for t in network.constants:
        if t.name in keep or t.weights.size > MAX_CONSTANT_ELEMENTS:
            continue
        value = t.weights.numpy()
        key = (value.dtype.str, value.shape, value.tobytes())
        first = seen.setdefault(key, t)
        if first is not t:
            rename[t.name] = first
    return rename


def run(network: Network, state: BuildState) -> str:
    """Merge duplicate small constants and duplicate deterministic layers, then prune."""
    network.toposort()
    bindings = binding_names(network)
    rename = _merge_constants(network, bindings)
    merged_constants = len(rename)
    seen: dict[Any, Any] = {}
    merged = 0
    for layer in network.layers:
        layer.inputs = [None if t is None else rename.get(t.name, t) for t in layer.inputs]
        if not layer.op.deterministic or any(t.name in bindings for t in layer.outputs):
            continue
        key = (layer.op_type, layer.domain, layer.opset, layer.nb_ranks, len(layer.outputs),
               tuple(None if t is None else t.name for t in layer.inputs),
               _key_value(layer.attributes))
        first = seen.setdefault(key, layer)
        if first is layer:
            continue
        for mine, theirs in zip(layer.outputs, first.outputs, strict=True):
            rename[mine.name] = theirs
        merged += 1
    # The duplicates now have no readers; prune drops them and the merged constants.
    pruned = network.prune()
    return (f"merged {merged} layers and {merged_constants} constants, pruned {pruned} "
            f"layers")

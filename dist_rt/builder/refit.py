"""Refit: replace an engine's weights in place, without rebuilding (TensorRT's ``IRefitter``).

A source weight (a constant of the network given to the builder) can be refit when the
engine still holds it in one of two recordable forms:

* as itself, under its name (possibly cast to the engine precision by the precision pass:
  a float32 value is cast here the same way);
* as a slice of a constant that a pass built by concatenation. The pass records, in
  ``network.metadata["weight_sources"]``, for each such constant the slices it is made of::

      {"q.merged": [{"source": "q", "axis": -1, "offset": 0, "size": 256},
                    {"source": "k", "axis": -1, "offset": 256, "size": 128}, ...]}

  (see :func:`record_concat`). Refit writes the new value into its slice.

Refused, with the reason:

* a weight the builder constant-folded into something else (a transposed weight became a
  new constant; see :func:`record_folded`): the folded copy would need the fold replayed
  and would otherwise stay stale, even when the weight itself also survives (tied
  embeddings: ``Gather`` reads the weight, ``lm_head`` its folded transpose);
* weights read as shape inputs (a Reshape target): their values shaped the plan.

Both records live in the network metadata, so they travel in the plan file and a loaded
engine refits like a freshly built one.

Rejected alternative: keeping every source weight next to the engine and re-running the
affected passes on refit. It doubles the weight memory, and passes are not written to be
replayed on one constant; slices and casts cover the transforms that matter (q/k/v and
gate/up merges) and everything else stays a clear "rebuild".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import BuildError
from dist_rt.network import Layer, Network, Tensor, format_shape
from dist_rt.weights import Weights

#: Metadata key: fused constant name -> slices it is made of (see :func:`record_concat`).
WEIGHT_SOURCES = "weight_sources"
#: Metadata key: source weight name -> what folded it (see :func:`record_folded`).
FOLDED_WEIGHTS = "folded_weights"


# -- recording (called by the passes) --------------------------------------------------------

def record_concat(network: Network, fused: str, parts: Sequence[Tensor], axis: int) -> None:
    """Record that constant ``fused`` is ``concatenate(parts, axis)``, for refit.

    Args:
        network: The network being built; its metadata is updated.
        fused: Name of the concatenated constant.
        parts: The constants concatenated, in order (their names are the refit names).
        axis: The concatenation axis (negative counts from the end).
    """
    records, offset = [], 0
    for t in parts:
        size = int(t.shape[axis])
        records.append({"source": t.name, "axis": int(axis), "offset": offset, "size": size})
        offset += size
    network.metadata.setdefault(WEIGHT_SOURCES, {})[fused] = records


def record_folded(network: Network, layer: Layer) -> None:
    """Record the source weights that constant folding of ``layer`` computed from.

    Only weights listed in ``metadata["source_weights"]`` are recorded (internal constants
    are not refit names), and not for ``Shape``/``Size``, whose outputs do not depend on the
    values a refit changes.

    Args:
        network: The network being built; its metadata is updated.
        layer: The layer about to be replaced by constants.
    """
    if layer.op_type in ("Shape", "Size"):
        return
    sources = set(network.metadata.get("source_weights") or ())
    for t in layer.inputs:
        if t is not None and t.is_constant and t.name in sources:
            network.metadata.setdefault(FOLDED_WEIGHTS, {}).setdefault(
                t.name, f"{layer.op_type} layer '{layer.name}'")


# -- refit -----------------------------------------------------------------------------------

def _checked(name: str, value: Any, shape: tuple, dtype: np.dtype,
             compute: np.dtype) -> np.ndarray:
    """``value`` as an array of ``shape`` and ``dtype`` (float32 cast to ``compute``)."""
    array = np.asarray(value)
    if tuple(array.shape) != tuple(shape):
        raise BuildError(f"refit: weight '{name}' has shape {format_shape(shape)} in the "
                         f"engine, got {format_shape(array.shape)}")
    if array.dtype != dtype:
        # The precision pass cast float32 weights to the compute dtype: cast the same way.
        if not (array.dtype == np.float32 and dtype == compute):
            raise BuildError(f"refit: weight '{name}' is {dtypes.name_of(dtype)} in the "
                             f"engine, got {array.dtype}")
        array = array.astype(compute)
    return np.ascontiguousarray(array)


def _slice_of(network: Network, name: str, fused: str,
              rec: Mapping[str, Any]) -> tuple[tuple, tuple[slice, ...]]:
    """(shape, index) of the slice of constant ``fused`` that holds weight ``name``."""
    tensor = network.tensors.get(fused)
    if tensor is None or not tensor.is_constant:
        raise BuildError(f"refit: weight '{name}' was merged into '{fused}', which the "
                         f"builder then folded into another layer; rebuild the engine with "
                         f"the new weight instead")
    shape = list(tensor.shape)
    try:
        axis = int(rec["axis"]) % len(shape)
        start, size = int(rec["offset"]), int(rec["size"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise BuildError(f"refit: the engine's record of weight '{name}' in '{fused}' is "
                         f"malformed: {dict(rec)}") from None
    if start < 0 or size < 0 or start + size > shape[axis]:
        raise BuildError(f"refit: the engine's record of weight '{name}' in '{fused}' "
                         f"(offset {start}, size {size}, axis {axis}) is outside its shape "
                         f"{format_shape(shape)}")
    index = [slice(None)] * len(shape)
    index[axis] = slice(start, start + size)
    shape[axis] = size
    return tuple(shape), tuple(index)


def _plan(network: Network, name: str, value: Any, compute: np.dtype,
          shape_inputs: set[str], merged: Mapping[str, list]) -> list[tuple]:
    """Where ``value`` goes: ``[(constant name, index or None, array), ...]``.

    Raises:
        BuildError: See :func:`refit`.
    """
    folded = (network.metadata.get(FOLDED_WEIGHTS) or {}).get(name)
    if folded is not None:
        raise BuildError(f"refit: weight '{name}' was constant-folded by the builder ({folded} "
                         f"computed a new constant from it at build time), so refitting would "
                         f"leave that copy stale; rebuild the engine with the new weight "
                         f"instead")
    tensor = network.tensors.get(name)
    direct = tensor is not None and tensor.is_constant
    if not direct and name not in merged:
        if name in set(network.metadata.get("source_weights") or ()):
            raise BuildError(f"refit: weight '{name}' was folded or fused away by the builder "
                             f"(no layer reads it as such any more); rebuild the engine with "
                             f"the new weight instead")
        fused = {f for places in merged.values() for f, _ in places}
        known = sorted({t.name for t in network.constants} - fused | set(merged))
        raise BuildError(f"refit: '{name}' is not a weight of this engine; it has "
                         f"{len(known)} weights, e.g. {known[:5]}")
    if name in shape_inputs:
        raise BuildError(f"refit: weight '{name}' is a shape input (its values fixed shapes "
                         f"at build time); rebuild the engine instead")
    targets = []
    if direct:
        targets.append((name, None, _checked(name, value, tensor.shape or (), tensor.dtype,
                                             compute)))
    for fused, rec in merged.get(name, ()):
        shape, index = _slice_of(network, name, fused, rec)
        dtype = network.tensors[fused].dtype
        targets.append((fused, index, _checked(name, value, shape, dtype, compute)))
    return targets


def refit(engine: Any, weights: Mapping[str, Any]) -> list[str]:
    """Replace weights of ``engine`` by name; all are checked before any is replaced.

    Contexts created afterwards see the new weights; existing contexts keep the old ones.
    A merged constant is therefore copied before its slices are written, never written in
    place: a CPU context holds the very array (the CPU ``to_device`` is the identity), and
    a loaded engine's array is a read-only map of the plan file.

    Args:
        engine: The :class:`dist_rt.engine.Engine` to update.
        weights: Source weight name -> new array (the source weight's shape; its engine
            dtype, or float32 for fp16/bf16 engines).

    Returns:
        The names replaced.

    Raises:
        BuildError: Unknown name, constant-folded weight, shape input, shape or dtype
            mismatch (names the weight, expected vs. got).
    """
    from dist_rt.builder.config import BuilderConfig  # noqa: PLC0415 - avoid an import cycle

    network = engine.network
    compute = BuilderConfig(precision=engine.precision).compute_dtype
    shape_inputs = {lay.inputs[i].name for lay in network.layers
                    for i in lay.op.shape_inputs
                    if i < len(lay.inputs) and lay.inputs[i] is not None}
    merged: dict[str, list] = {}
    for fused, records in (network.metadata.get(WEIGHT_SOURCES) or {}).items():
        for rec in records:
            merged.setdefault(str(rec.get("source")), []).append((fused, rec))
    targets = [t for name, value in weights.items()
               for t in _plan(network, name, value, compute, shape_inputs, merged)]
    updated: dict[str, np.ndarray] = {}
    for const, index, array in targets:
        if index is None:
            updated[const] = array
            continue
        if const not in updated:
            updated[const] = np.array(network.tensors[const].weights.numpy(), copy=True)
        updated[const][index] = array
    for const, array in updated.items():
        network.tensors[const].weights = Weights(array)
    return list(weights)

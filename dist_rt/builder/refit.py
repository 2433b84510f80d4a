"""Refit: replace an engine's weights in place, without rebuilding (TensorRT's ``IRefitter``).

Only weights that survive the build unchanged in meaning can be refit: a constant the engine
still holds under its original name. A weight the builder folded (a transposed or reshaped
weight became a new constant) or fused away no longer exists as such; refitting it would
need the fold replayed, so the error says to rebuild. Weights read as shape inputs (a
Reshape target) are refused too: their values shaped the plan.

The new value must have the stored shape and either the stored dtype or, for engines built
in fp16/bf16, float32 (cast here as the precision pass casts weights at build time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import BuildError
from dist_rt.network import Network, format_shape
from dist_rt.weights import Weights


def _check(network: Network, name: str, value: Any, compute: np.dtype,
           shape_inputs: set[str]) -> np.ndarray:
    tensor = network.tensors.get(name)
    if tensor is None or not tensor.is_constant:
        source = set(network.metadata.get("source_weights") or ())
        if name in source:
            raise BuildError(f"refit: weight '{name}' was folded or fused away by the builder "
                             f"(no layer reads it as such any more); rebuild the engine with "
                             f"the new weight instead")
        known = sorted(t.name for t in network.constants)
        raise BuildError(f"refit: '{name}' is not a weight of this engine; it has "
                         f"{len(known)} weights, e.g. {known[:5]}")
    if name in shape_inputs:
        raise BuildError(f"refit: weight '{name}' is a shape input (its values fixed shapes "
                         f"at build time); rebuild the engine instead")
    array = np.asarray(value)
    if tuple(array.shape) != tuple(tensor.shape or ()):
        raise BuildError(f"refit: weight '{name}' has shape {format_shape(tensor.shape)} in "
                         f"the engine, got {format_shape(array.shape)}")
    if array.dtype != tensor.dtype:
        if not (array.dtype == np.float32 and tensor.dtype == compute):
            raise BuildError(f"refit: weight '{name}' is {dtypes.name_of(tensor.dtype)} in the "
                             f"engine, got {array.dtype}")
        array = array.astype(compute)
    return np.ascontiguousarray(array)


def refit(engine: Any, weights: Mapping[str, Any]) -> list[str]:
    """Replace weights of ``engine`` by name; all are checked before any is replaced.

    Contexts created afterwards see the new weights; existing contexts keep the old ones
    (they copied the constants to the device when they were created).

    Args:
        engine: The :class:`dist_rt.engine.Engine` to update.
        weights: Weight name -> new array (same shape; same dtype, or float32 for fp16/bf16
            engines).

    Returns:
        The names replaced.

    Raises:
        BuildError: Unknown name, folded/fused weight, shape input, shape or dtype mismatch
            (names the weight, expected vs. got).
    """
    from dist_rt.builder.config import BuilderConfig  # noqa: PLC0415 - avoid an import cycle

    network = engine.network
    compute = BuilderConfig(precision=engine.precision).compute_dtype
    shape_inputs = {lay.inputs[i].name for lay in network.layers
                    for i in lay.op.shape_inputs
                    if i < len(lay.inputs) and lay.inputs[i] is not None}
    checked = {name: _check(network, name, value, compute, shape_inputs)
               for name, value in weights.items()}
    for name, array in checked.items():
        network.tensors[name].weights = Weights(array)
    return list(checked)

"""Merge MatMuls that read one activation with constant 2-D weights into one MatMul + Split.

Pattern (a transformer's q/k/v projections, a gated MLP's gate/up projections)::

    Y_i = MatMul(X, W_i)   i = 1..n,  W_i constant (K, N_i), read by nothing else

becomes ``Split(MatMul(X, [W_1 | ... | W_n]), [N_1, ..., N_n], axis=-1)``: the weight
concatenation happens once, here, and a decode step launches one GEMM that streams all
``sum(N_i)`` columns instead of ``n`` small GEMMs. ``Y_i`` keep their names, so the readers
(RoPE, Attention, SiluMul...) are untouched; run this after the other fusions, whose
patterns then still see the same readers (SiluMul reads two Split outputs of one shape).

Tensor parallelism: on a partitioned network the W_i are the rank's local slices (column
shards of a Megatron split); concatenating them is still exact, as each Y_i is the rank's
local slice of the full output either way.

Rejected alternative: concatenating weights that other layers also read (tied embeddings,
a weight shared by two activations) would keep both copies in memory; such MatMuls are left
alone.

Refit: each W_i's column range in the merged weight is recorded (``refit.record_concat``),
so ``Engine.refit({W_i: value})`` writes the new value into its slice.
"""

from __future__ import annotations

import numpy as np

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import Matcher, concat_columns, fused_from, split_columns
from dist_rt.builder.refit import record_concat
from dist_rt.network import Layer, Network, Tensor


def _weight(m: Matcher, layer: Layer) -> Tensor | None:
    """The constant 2-D weight of ``MatMul(X, W)`` that only ``layer`` reads, else None."""
    if layer.op_type != "MatMul" or layer.domain not in ("", "ai.onnx"):
        return None
    w = layer.inputs[1]
    if (w is None or not w.is_constant or w.rank != 2 or layer.inputs[0].is_constant
            or not all(isinstance(d, int) for d in w.shape) or not m.private(w)):
        return None
    return w


def _groups(m: Matcher, network: Network) -> list[list[Layer]]:
    """MatMuls with a mergeable weight, grouped by activation, K and weight dtype."""
    groups: dict[tuple, list[Layer]] = {}
    for layer in network.layers:
        w = _weight(m, layer)
        if w is not None:
            key = (layer.inputs[0].name, w.shape[0], np.dtype(w.dtype).str)
            groups.setdefault(key, []).append(layer)
    return [g for g in groups.values() if len(g) > 1]


def _merge(network: Network, group: list[Layer]) -> None:
    """Replace the MatMuls of ``group`` by one MatMul on the concatenated weight + Split."""
    x, first = group[0].inputs[0], group[0]
    weights = [lay.inputs[1] for lay in group]
    sizes = [int(w.shape[1]) for w in weights]
    merged = concat_columns([w.weights.numpy() for w in weights])
    w_cat = network.add_constant(network.unique_name(f"{weights[0].name}.merged"), merged)
    record_concat(network, w_cat.name, weights, axis=-1)  # refit writes W_i's column slice
    mm = network.add_layer("MatMul", [x, w_cat],
                           name=network.unique_name(f"{first.name}.merged"))
    mm.metadata["fused_from"] = fused_from(group)
    split_columns(network, mm, group, sizes)


def run(network: Network, state: BuildState) -> str:
    """Merge every group of parallel constant-weight MatMuls into one MatMul + Split.

    Args:
        network: Edited in place.
        state: Build state (unused: the merge is exact in every precision).

    Returns:
        A summary line.
    """
    m = Matcher(network)
    groups = _groups(m, network)
    for group in groups:
        _merge(network, group)
    if groups:
        network.toposort()  # prune walks layers in reverse topological order
        network.prune()
    merged = sum(len(g) for g in groups)
    return f"{merged} MatMuls merged into {len(groups)}"

"""Fuse a residual Add and the RMSNormalization of its sum into one dist_rt::AddRMSNorm.

Pattern (pre-norm transformer blocks, after ``fuse_rmsnorm`` has made the norm one layer)::

    S = Add(A, B)                      (S may have other readers: the residual stream)
    Y = RMSNormalization(S, w, axis=-1)   w: 1-D over the last axis

becomes ``S, Y = AddRMSNorm(A, B, w, epsilon)``. Both outputs keep their names, so every
reader of the residual ``S`` and of ``Y`` is untouched. The fusion is exact: the op rounds
``S`` to its dtype before the float32 statistics, as the two layers do.

Runs inside the builder, i.e. after partitioning, on the rank-local network (where any
collective the planner needed is already an explicit layer), so the fused op needs no
sharding rule.
"""

from __future__ import annotations

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import Matcher, add_fused, prune_fused
from dist_rt.network import Layer, Network


def _match(m: Matcher, norm: Layer) -> Layer | None:
    """The Add feeding ``norm`` (an RMSNormalization over the last axis), else None."""
    if norm.op_type != "RMSNormalization" or norm.domain not in ("", "ai.onnx"):
        return None
    x, w = norm.inputs[0], norm.inputs[1] if len(norm.inputs) > 1 else None
    add = m.producer(x, "Add")
    if add is None or w is None or w.rank != 1 or x.shape is None:
        return None
    rank = len(x.shape)
    if int(norm.attr("axis", -1)) % rank != rank - 1 or any(t.rank is None for t in add.inputs):
        return None
    a, b = add.inputs
    if a.dtype != b.dtype or a.dtype != x.dtype:
        return None
    return add


def run(network: Network, state: BuildState) -> str:
    """Replace every Add -> RMSNormalization pair by one AddRMSNorm layer.

    Args:
        network: Edited in place.
        state: Build state (unused: the fusion is exact in every precision).

    Returns:
        A summary line.
    """
    m = Matcher(network)
    fused = 0
    for norm in list(network.layers):
        add = _match(m, norm)
        if add is None:
            continue
        add_fused(network, "AddRMSNorm", [*add.inputs, norm.inputs[1]],
                  {"epsilon": float(norm.attr("epsilon", 1e-5))}, name=f"{norm.name}.add",
                  outputs=[add.outputs[0], norm.outputs[0]], replaces=[add, norm])
        fused += 1
    prune_fused(network, fused)
    return f"{fused} Add+RMSNorm pairs fused"

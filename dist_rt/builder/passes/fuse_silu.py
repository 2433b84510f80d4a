"""Fuse ``Mul(x, Sigmoid(x))`` into dist_rt::Silu, and ``silu(gate) * up`` into SiluMul.

Opset 18 has no SiLU op, so exporters write ``F.silu(x)`` as ``Mul(x, Sigmoid(x))``. When
that product's only reader is another Mul whose other operand has the same shape (the
``up`` projection of a gated MLP), the two fuse into ``SiluMul(gate, up)``: one elementwise
kernel reading two tensors and writing one, instead of three kernels and two temporaries.
"""

from __future__ import annotations

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import Matcher, add_fused, anchors, other, prune_fused
from dist_rt.network import Network


def run(network: Network, state: BuildState) -> str:
    """Replace SiLU decompositions (and their gating Mul) by fused dist_rt layers.

    Args:
        network: Edited in place.
        state: Build state (unused).

    Returns:
        A summary line.
    """
    m = Matcher(network)
    counts = {"Silu": 0, "SiluMul": 0}
    for sig in anchors(network, "Sigmoid"):
        x, s = sig.inputs[0], sig.outputs[0]
        if not m.private(s):
            continue
        (mul,) = m.users[s.name]
        if mul.op_type != "Mul" or other(mul, s) is not x:
            continue
        chain, act = [sig, mul], mul.outputs[0]
        inputs, op_type = [x], "Silu"
        readers = m.users[act.name]
        if m.private(act) and readers[0].op_type == "Mul":
            up = other(readers[0], act)
            if up is not None and up.shape is not None and up.shape == x.shape:
                chain.append(readers[0])
                inputs, op_type = [x, up], "SiluMul"
        add_fused(network, op_type, inputs, {}, name=f"{chain[-1].name}.{op_type.lower()}",
                  outputs=chain[-1].outputs[:1], replaces=chain)
        counts[op_type] += 1
    prune_fused(network, sum(counts.values()))
    return f"{counts['SiluMul']} SiluMul + {counts['Silu']} Silu fused"

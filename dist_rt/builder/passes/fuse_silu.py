"""Fuse ``Mul(x, Sigmoid(x))`` into dist_rt::Silu, and ``silu(gate) * up`` into SiluMul.

Opset 18 has no SiLU op, so exporters write ``F.silu(x)`` as ``Mul(x, Sigmoid(x))``. When
that product's only reader is another Mul whose other operand has the same shape (the
``up`` projection of a gated MLP), the two fuse into ``SiluMul(gate, up)``: one elementwise
kernel reading two tensors and writing one, instead of three kernels and two temporaries.
"""

from __future__ import annotations

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import Matcher, fused_from, other, take_name
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
    for sig in list(network.layers):
        if sig.op_type != "Sigmoid" or sig.domain not in ("", "ai.onnx"):
            continue
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
        network.opsets.setdefault("dist_rt", 1)
        out = chain[-1].outputs[0]
        new = network.add_layer(op_type, inputs, {}, domain="dist_rt",
                                name=network.unique_name(f"{chain[-1].name}.{op_type.lower()}"),
                                outputs=[take_name(network, out)])
        new.metadata["fused_from"] = fused_from(chain)
        network.replace_uses(out, new.outputs[0])
        counts[op_type] += 1
    if any(counts.values()):
        network.toposort()  # prune walks layers in reverse topological order
        network.prune()
    return f"{counts['SiluMul']} SiluMul + {counts['Silu']} Silu fused"

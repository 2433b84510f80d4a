"""Fuse the exported RMSNorm decomposition into one ``RMSNormalization`` layer.

Pattern (``torch.rsqrt`` exports as Sqrt + Reciprocal; a Div is also accepted)::

    Pow(x, 2) -> ReduceMean(axes=[-1], keepdims=1) -> Add(eps) -> Sqrt
      -> Reciprocal -> Mul(x, .)        or        -> Div(x, .)
      -> Mul(w, .)  (w: a 1-D constant over the last axis; optional)

becomes ``RMSNormalization(x, w, axis=-1, epsilon=eps)`` (ONNX opset 23; the layer is tagged
opset 23 whatever the model's opset, since the op's semantics do not depend on it). Without
a weight Mul a constant of ones is used. The op computes its statistics in float32, so the
precision pass keeps it in fp32 like any normalization.
"""

from __future__ import annotations

import numpy as np

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import (
    Matcher,
    add_fused,
    anchors,
    axes_of,
    const_scalar,
    other,
    prune_fused,
)
from dist_rt.network import Layer, Network

#: The ONNX opset that introduced RMSNormalization.
RMS_OPSET = 23


def _last_axis(layer: Layer, rank: int | None) -> bool:
    axes = axes_of(layer)
    return (axes is not None and len(axes) == 1 and rank is not None
            and axes[0] % rank == rank - 1 and int(layer.attr("keepdims", 1)) == 1)


def _match(m: Matcher, pow_layer: Layer) -> tuple[list[Layer], dict] | None:
    x = pow_layer.inputs[0]
    if const_scalar(pow_layer.inputs[1]) != 2.0 or not m.private(pow_layer.outputs[0]):
        return None
    chain = [pow_layer]
    (mean,) = m.users[pow_layer.outputs[0].name]
    if mean.op_type != "ReduceMean" or not _last_axis(mean, x.rank):
        return None
    (add,) = m.users[mean.outputs[0].name] if m.private(mean.outputs[0]) else (None,)
    if add is None or add.op_type != "Add":
        return None
    eps = const_scalar(other(add, mean.outputs[0]))
    if eps is None or not m.private(add.outputs[0]):
        return None
    (sqrt,) = m.users[add.outputs[0].name]
    if sqrt.op_type != "Sqrt" or not m.private(sqrt.outputs[0]):
        return None
    chain += [mean, add, sqrt]
    (nxt,) = m.users[sqrt.outputs[0].name]
    if nxt.op_type == "Reciprocal" and m.private(nxt.outputs[0]):
        (mul,) = m.users[nxt.outputs[0].name]
        if mul.op_type != "Mul" or other(mul, nxt.outputs[0]) is not x:
            return None
        chain += [nxt, mul]
    elif nxt.op_type == "Div" and nxt.inputs[0] is x and nxt.inputs[1] is sqrt.outputs[0]:
        mul = nxt
        chain.append(mul)
    else:
        return None
    normed, weight = mul.outputs[0], None
    readers = m.users[normed.name]
    if m.private(normed) and readers[0].op_type == "Mul":
        w = other(readers[0], normed)
        if (w is not None and w.is_constant and w.rank == 1 and x.shape is not None
                and w.shape[0] == x.shape[-1]):
            weight, chain = w, chain + [readers[0]]
    return chain, {"x": x, "weight": weight, "eps": eps}


def run(network: Network, state: BuildState) -> str:
    """Replace every RMSNorm decomposition by one RMSNormalization layer.

    Args:
        network: Edited in place.
        state: Build state (unused: the fusion is exact in every precision).

    Returns:
        A summary line.
    """
    m = Matcher(network)
    fused = 0
    for layer in anchors(network, "Pow"):
        found = _match(m, layer)
        if found is None:
            continue
        chain, p = found
        x, weight = p["x"], p["weight"]
        if weight is None:
            ones = np.ones(x.shape[-1], dtype=x.dtype)
            weight = network.add_constant(network.unique_name(f"{layer.name}.ones"), ones)
        add_fused(network, "RMSNormalization", [x, weight], {"axis": -1, "epsilon": p["eps"]},
                  name=f"{chain[-1].name}.rmsnorm", outputs=[chain[-1].outputs[0]],
                  replaces=chain, domain="", opset=RMS_OPSET)
        fused += 1
    prune_fused(network, fused)
    return f"{fused} RMSNorm patterns fused"

"""Merge RotaryHalf layers that share their cos/sin tables into dist_rt::RotaryHalfPair.

Pattern (a Llama attention block after ``fuse_rope``)::

    Q' = RotaryHalf(Q, cos, sin)        K' = RotaryHalf(K, cos, sin)

with the very same ``cos`` and ``sin`` tensors becomes ``(Q', K') = RotaryHalfPair(Q, K, cos,
sin)``: the CUDA backend then rotates both in one kernel launch. At one decode token each
launch is pure latency (~1.7 us plus ~0.9 us of graph gap), 2 per layer. Q and K may have
different shapes (GQA); Q' and K' keep their names, so readers are untouched.

Pairing: the RotaryHalf layers of one (cos, sin) are taken in network order, two at a time
(a Llama lists each layer's q and k RoPE next to each other); an odd one out stays a
RotaryHalf. Two layers are merged only when neither reads, through any chain of layers, what
the other writes: the merged layer must run after both inputs exist and before the first
reader of either output, and such a chain would make that impossible (a cycle). The new
layer takes the later one's place in the layer list; the topological sort before pruning
then moves it up if a reader of the earlier output came in between.

Run this after every pass that matches RotaryHalf layers or reads their producers; nothing
after it looks for RotaryHalf.
"""

from __future__ import annotations

from collections.abc import Iterator

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import add_fused, anchors, prune_fused
from dist_rt.network import Layer, Network


def _groups(network: Network) -> list[list[Layer]]:
    """RotaryHalf layers of three inputs, grouped by the identity of their cos and sin."""
    groups: dict[tuple[int, int], list[Layer]] = {}
    for layer in anchors(network, "RotaryHalf", ("dist_rt",)):
        if len(layer.inputs) != 3 or any(t is None for t in layer.inputs):
            continue
        _, cos, sin = layer.inputs
        groups.setdefault((id(cos), id(sin)), []).append(layer)
    return [g for g in groups.values() if len(g) > 1]


def _depends(layer: Layer, on: Layer) -> bool:
    """True when an input of ``layer`` is computed, through any chain of layers, from ``on``.

    A walk back over producers, so it holds on the graph as edited so far (merged pairs
    included) without relying on the layer list's order.
    """
    stack = [t.producer for t in layer.inputs if t is not None and t.producer is not None]
    seen: set[int] = set()
    while stack:
        cur = stack.pop()
        if cur is on:
            return True
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        stack.extend(t.producer for t in cur.inputs if t is not None and t.producer is not None)
    return False


def _pairs(group: list[Layer]) -> Iterator[tuple[Layer, Layer]]:
    """Consecutive independent layers of ``group`` (network order), two at a time.

    A generator: each check runs after the caller merged the pairs yielded before, so it
    sees every path those merges created.
    """
    pending = None
    for layer in group:
        if pending is not None and not (_depends(layer, pending) or _depends(pending, layer)):
            yield pending, layer
            pending = None
        else:
            pending = layer  # the earlier one, which the later one reads, stays a RotaryHalf


def _merge(network: Network, first: Layer, second: Layer) -> None:
    """Replace ``first`` and ``second`` by one RotaryHalfPair in ``second``'s place."""
    q, cos, sin = first.inputs
    pair = add_fused(network, "RotaryHalfPair", [q, second.inputs[0], cos, sin], {},
                     name=f"{first.name}.pair",
                     outputs=[first.outputs[0], second.outputs[0]], replaces=[first, second])
    network.layers.remove(pair)  # add_fused appends; both inputs exist at second's place
    network.layers.insert(network.layers.index(second), pair)


def run(network: Network, state: BuildState) -> str:
    """Merge pairs of RotaryHalf layers with the same cos and sin into RotaryHalfPair layers.

    Args:
        network: Edited in place.
        state: Build state (unused: the pair computes exactly what the two layers did).

    Returns:
        A summary line.
    """
    merged = 0
    for group in _groups(network):
        for first, second in _pairs(group):
            _merge(network, first, second)
            merged += 1
    prune_fused(network, merged)
    return f"{merged} RoPE pairs merged"

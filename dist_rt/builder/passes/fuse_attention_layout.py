"""Fold the Transpose after a fused Attention into the op's ``output_layout="bshd"``.

Exporters write multi-head attention's output as::

    Y = Attention(q, k, v)                  (B, H, S, D)
    T = Transpose(Y, perm=[0, 2, 1, 3])     (B, S, H, D)   a full copy of Y
    R = Reshape(T, (B, S, H*D)) -> MatMul(R, W_o)

When ``Y``'s only reader is that Transpose, the Attention layer takes
``output_layout="bshd"`` and writes ``T`` itself (keeping its name), so the copy goes away and
the Reshape merges contiguous dims for free. On CUDA the decode kernel already writes a
(B, S, H, D) buffer; the long-query path returns a transposed view (see
``runtime/cuda/kernels.py``), never a wrong layout.

Rejected alternative: dropping a Transpose(0, 2, 1, 3) -> Reshape pair in front of any MatMul
would change what the MatMul reads; only a producer that can write the other layout makes
the copy disappear, and Attention is the one that matters (issue 5: 9-14 ms of such copies
per 8x2048 prefill).
"""

from __future__ import annotations

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import Matcher, anchors, fused_from, take_name
from dist_rt.network import Network

_TO_BSHD = [0, 2, 1, 3]


def run(network: Network, state: BuildState) -> str:
    """Fold ``Attention -> Transpose(0, 2, 1, 3)`` into ``Attention(output_layout="bshd")``.

    Args:
        network: Edited in place.
        state: Build state (unused).

    Returns:
        A summary line.
    """
    m = Matcher(network)
    folded = 0
    for att in anchors(network, "Attention", ("dist_rt",)):
        if att.attr("output_layout", "bhsd") not in ("bhsd", b"bhsd"):
            continue
        y = att.outputs[0]
        if not m.private(y):
            continue
        (tr,) = m.users[y.name]
        if (tr.op_type != "Transpose" or tr.domain not in ("", "ai.onnx")
                or [int(p) for p in tr.attr("perm", [])] != _TO_BSHD):
            continue
        t = tr.outputs[0]
        old_y = y.name
        name = take_name(network, t)
        del network.tensors[old_y]  # Y is renamed to T's name: readers of T read Y now
        y.name = name
        network.tensors[name] = y
        att.attributes["output_layout"] = "bshd"
        att.metadata["fused_from"] = [*att.metadata.get("fused_from", []), *fused_from([tr])]
        network.infer_layer(att)
        network.replace_uses(t, y)
        folded += 1
    if folded:
        network.prune()  # the Transposes now have no readers
    return f"{folded} attention output transposes folded"

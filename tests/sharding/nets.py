"""Small hand-built networks for the sharding tests, and a layer-by-layer reference runner."""

from __future__ import annotations

import numpy as np

import dist_rt
from dist_rt.ops import RunContext


def run_network(net: dist_rt.Network, feeds: dict[str, np.ndarray],
                rt: RunContext | None = None) -> dict[str, np.ndarray]:
    """Run ``net`` layer by layer with the ops' reference implementations."""
    rt = rt or RunContext()
    net.toposort()
    values: dict[str, np.ndarray] = dict(feeds)
    for t in net.constants:
        values[t.name] = t.weights.numpy()
    for layer in net.layers:
        ins = [None if t is None else values[t.name] for t in layer.inputs]
        for t, v in zip(layer.outputs, layer.op.run(layer, ins, rt), strict=False):
            values[t.name] = np.asarray(v)
    return {t.name: values[t.name] for t in net.outputs}


def transformer(vocab: int = 64, hidden: int = 48, heads: int = 4, mlp: int = 96,
                layers: int = 2, seed: int = 0, batch="batch", seq="seq") -> dist_rt.Network:
    """Decoder-style stack: vocab Gather, pre-norm attention (heads via Reshape/Transpose),
    gated MLP, residuals, LM head. Uses only ops every helper has landed."""
    rng = np.random.default_rng(seed)
    d = hidden // heads
    net = dist_rt.Network("tiny_transformer")

    def w(name, shape, std=None):
        std = std if std is not None else shape[0] ** -0.5
        return net.add_constant(name, (rng.standard_normal(shape) * std).astype(np.float32))

    ids = net.add_input("input_ids", np.int64, (batch, seq))
    h = net.add_gather(w("embed", (vocab, hidden), 1.0), ids, axis=0)
    for i in range(layers):
        p = f"layers.{i}"
        x = net.add_layer("LayerNormalization", [h, w(f"{p}.ln1.g", (hidden,)),
                                                 w(f"{p}.ln1.b", (hidden,))],
                          {"axis": -1}, name=f"{p}.ln1").outputs[0]
        q = net.add_matmul(x, w(f"{p}.q", (hidden, hidden)))
        k = net.add_matmul(x, w(f"{p}.k", (hidden, hidden)))
        v = net.add_matmul(x, w(f"{p}.v", (hidden, hidden)))
        q, k, v = (net.add_transpose(net.add_reshape(t, [0, 0, heads, d]), [0, 2, 1, 3])
                   for t in (q, k, v))
        s = net.add_matmul(q, net.add_transpose(k, [0, 1, 3, 2]))
        s = net.add_elementwise(s, net.add_constant(net.unique_name("scale"),
                                                    np.float32(d ** -0.5)), "Mul")
        probs = net.add_activation(s, "Sigmoid")
        o = net.add_transpose(net.add_matmul(probs, v), [0, 2, 1, 3])
        o = net.add_reshape(o, [0, 0, hidden])
        h = net.add_elementwise(h, net.add_matmul(o, w(f"{p}.o", (hidden, hidden))), "Add")
        x = net.add_layer("LayerNormalization", [h, w(f"{p}.ln2.g", (hidden,)),
                                                 w(f"{p}.ln2.b", (hidden,))],
                          {"axis": -1}, name=f"{p}.ln2").outputs[0]
        gate = net.add_matmul(x, w(f"{p}.gate", (hidden, mlp)))
        up = net.add_matmul(x, w(f"{p}.up", (hidden, mlp)))
        act = net.add_elementwise(gate, net.add_activation(gate, "Sigmoid"), "Mul")
        down = net.add_matmul(net.add_elementwise(act, up, "Mul"), w(f"{p}.down", (mlp, hidden)))
        h = net.add_elementwise(h, down, "Add")
    logits = net.add_matmul(h, w("lm_head", (hidden, vocab)))
    net.mark_output(logits)
    net.infer_shapes()
    return net

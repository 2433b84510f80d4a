"""Small networks for the builder tests, built through the Network API, with NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig
from dist_rt.models.llama import LlamaConfig, make_llama
from dist_rt.network import Network
from dist_rt.ops import is_supported

#: ``(layers, heads, kv_heads, dynamic shapes)`` of the small Llamas the fusion tests build,
#: and their test ids.
LLAMA_PARAMS = [(2, 8, 4, False), (3, 4, 4, True)]
LLAMA_IDS = ["gqa", "mha-dynamic"]


def needs(*ops: str):
    """Skip a test until the listed ops are registered (other helpers write them)."""
    missing = [o for o in ops if not is_supported(o)]
    return pytest.mark.skipif(bool(missing), reason=f"ops not registered yet: {missing}")


def mlp(rng: np.random.Generator, d_in: int = 7, d_hidden: int = 13, d_out: int = 5):
    """x(batch, d_in) @ W1 + b1 -> Relu -> @ W2; returns (network, weights dict)."""
    net = Network("mlp")
    x = net.add_input("x", np.float32, ("batch", d_in))
    w1 = rng.standard_normal((d_in, d_hidden)).astype(np.float32)
    b1 = rng.standard_normal(d_hidden).astype(np.float32)
    w2 = rng.standard_normal((d_hidden, d_out)).astype(np.float32)
    h = net.add_matmul(x, net.add_constant("w1", w1))
    if is_supported("Add"):
        h = net.add_elementwise(h, net.add_constant("b1", b1), "Add")
    else:
        b1 = np.zeros_like(b1)
    y = net.add_matmul(net.add_activation(h, "Relu"), net.add_constant("w2", w2))
    net.mark_output(y)
    return net, {"w1": w1, "b1": b1, "w2": w2}


def mlp_reference(x: np.ndarray, w: dict) -> np.ndarray:
    """NumPy reference of :func:`mlp`."""
    return np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"]


def run(network: Network, feeds: dict, **config) -> dict:
    """Build with ``verify=True`` and execute once."""
    engine = Builder(BuilderConfig(verify=True, **config)).build(network)
    with engine.create_execution_context() as ctx:
        return ctx.execute(feeds)


def llama_net(layers: int, heads: int, kv_heads: int, dynamic: bool):
    """A small ``make_llama`` model parsed into a Network; returns (config, network)."""
    cfg = LlamaConfig(layers=layers, heads=heads, kv_heads=kv_heads, hidden=64, mlp=96,
                      vocab=50, max_seq=32)
    return cfg, dist_rt.parse_onnx(make_llama(cfg, dynamic_shapes=dynamic))


def logits(engine, feeds: dict) -> np.ndarray:
    """Execute ``engine`` once on ``feeds``; its ``logits`` output."""
    with engine.create_execution_context() as ctx:
        return ctx.execute(feeds)["logits"]

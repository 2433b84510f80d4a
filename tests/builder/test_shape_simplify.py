"""shape_simplify: exporter Shape chains become 0/-1 targets; results equal level 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig
from dist_rt.models import LlamaConfig, make_llama

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = LlamaConfig(vocab=64, hidden=32, layers=1, heads=4, kv_heads=2, mlp=64, max_seq=64)


def _shapes(engine) -> int:
    return sum(lay.op_type == "Shape" for lay in engine.network.layers)


def _feeds(network, batch=2, seq=5):
    rng = np.random.default_rng(0)
    feeds = {}
    for t in network.inputs:
        shape = [batch if i == 0 else seq if i == 1 and isinstance(d, str) else d
                 for i, d in enumerate(t.shape)]
        feeds[t.name] = (rng.integers(0, 30, shape).astype(t.dtype) if t.dtype.kind in "iu"
                         else rng.standard_normal(shape).astype(t.dtype))
    return feeds


def _compare(network, feeds):
    built = {}
    for level in (0, 1):
        engine = Builder(BuilderConfig(verify=True, optimization_level=level)).build(network)
        with engine.create_execution_context() as ctx:
            built[level] = engine, ctx.execute(feeds)
    for name, want in built[0][1].items():
        np.testing.assert_allclose(built[1][1][name], want, rtol=1e-5, atol=1e-5)
    return built[0][0], built[1][0]


def test_dynamic_llama_chains_disappear():
    network = dist_rt.parse_onnx(make_llama(TINY, dynamic_shapes=True))
    plain, simple = _compare(network, _feeds(network))
    # One Shape stays: the RoPE tables are sliced to the run-time sequence length.
    assert _shapes(plain) == 13 and _shapes(simple) == 1
    reshapes = [lay for lay in simple.network.layers if lay.op_type == "Reshape"]
    assert all(lay.inputs[1].is_constant for lay in reshapes)


@pytest.mark.parametrize("name, before, after", [("gpt2_block", 2, 1), ("bert_block", 2, 1),
                                                 ("llama_block", 2, 2)])
def test_dynamo_fixtures(name, before, after):
    network = dist_rt.parse_onnx(onnx.load(FIXTURES / f"{name}.onnx"))
    feeds = _feeds(network)
    if "attention_mask" in feeds:
        feeds["attention_mask"] = np.ones_like(feeds["attention_mask"])
    plain, simple = _compare(network, feeds)
    assert (_shapes(plain), _shapes(simple)) == (before, after)
    assert "rewrote" in simple.build_notes["shape_simplify"]


def test_profile_reaching_zero_keeps_minus_one_out():
    network = dist_rt.parse_onnx(make_llama(TINY, dynamic_shapes=True))
    config = BuilderConfig(verify=True, optimization_level=1)
    config.add_profile("p", min={"input_ids": (0, 1)}, opt={"input_ids": (1, 4)},
                       max={"input_ids": (2, 8)})
    engine = Builder(config).build(network)
    for lay in engine.network.layers:
        if lay.op_type == "Reshape" and lay.inputs[1].is_constant and lay.inputs[1].name.endswith(
                ".shape"):
            assert -1 not in lay.inputs[1].weights.numpy().tolist()

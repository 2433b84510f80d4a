"""Fusion passes on make_llama models: pattern counts and equality with the unfused build."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from _builder_nets import LLAMA_IDS, LLAMA_PARAMS, llama_net, logits

from dist_rt import Builder, BuilderConfig
from dist_rt.models.llama import sample_inputs
from dist_rt.network import Network


def _build(net, level, **kw):
    return Builder(BuilderConfig(optimization_level=level, verify=True, **kw)).build(net)


@pytest.fixture(scope="module", params=LLAMA_PARAMS, ids=LLAMA_IDS)
def llama(request):
    return llama_net(*request.param)


class TestLlamaFusion:
    def test_pattern_counts(self, llama):
        cfg, net = llama
        ops = Counter(lay.op_type for lay in _build(net, 2).network.layers)
        assert ops["Attention"] == cfg.layers
        assert ops["RMSNormalization"] + ops["AddRMSNorm"] == 2 * cfg.layers + 1
        assert ops["AddRMSNorm"] == 2 * cfg.layers  # every norm but the first reads an Add
        assert ops["SiluMul"] == cfg.layers
        assert ops["Softmax"] == ops["Sigmoid"] == ops["Pow"] == ops["Expand"] == 0

    def test_attention_attributes(self, llama):
        cfg, net = llama
        att = [lay for lay in _build(net, 2).network.layers if lay.op_type == "Attention"]
        for lay in att:
            assert lay.domain == "dist_rt" and len(lay.inputs) == 3  # causal: no mask input
            assert lay.attr("causal") == 1
            assert lay.attr("num_heads") == cfg.heads
            assert lay.attr("kv_num_heads") == cfg.kv_heads
            assert lay.attr("scale") == pytest.approx(cfg.head_dim ** -0.5)

    @pytest.mark.parametrize("batch, seq", [(1, 1), (2, 7)])
    def test_matches_unfused(self, llama, batch, seq):
        cfg, net = llama
        feeds = sample_inputs(cfg, batch, seq)
        ref = logits(_build(net, 0), feeds)
        out = logits(_build(net, 2), feeds)
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)

    def test_fp16_close(self, llama):
        cfg, net = llama
        feeds = sample_inputs(cfg, 2, 5)
        ref = logits(_build(net, 0), feeds)
        out = logits(_build(net, 2, precision="fp16"), feeds)
        assert np.max(np.abs(out - ref)) <= 0.02 * (1 + np.max(np.abs(ref)))

    def test_level_1_leaves_patterns(self, llama):
        _, net = llama
        ops = Counter(lay.op_type for lay in _build(net, 1).network.layers)
        assert ops["Attention"] == ops["RMSNormalization"] == ops["SiluMul"] == 0


def _sdpa_net(mask_kind: str) -> Network:
    """q k^T / sqrt(d) (+ mask) -> softmax -> v, written with ONNX ops (no GQA)."""
    net = Network("sdpa")
    q = net.add_input("q", np.float32, (2, 3, 5, 4))
    k = net.add_input("k", np.float32, (2, 3, 5, 4))
    v = net.add_input("v", np.float32, (2, 3, 5, 4))
    kt = net.add_layer("Transpose", [k], {"perm": [0, 1, 3, 2]}).outputs[0]
    s = net.add_layer("MatMul", [q, kt]).outputs[0]
    s = net.add_layer("Div", [s, net.add_constant("d", np.float32(2.0))]).outputs[0]
    if mask_kind == "input":
        m = net.add_input("m", np.float32, (1, 1, 5, 5))
        s = net.add_layer("Add", [m, s]).outputs[0]
    p = net.add_layer("Softmax", [s], {"axis": -1}).outputs[0]
    net.mark_output(net.add_layer("MatMul", [p, v]).outputs[0])
    return net


class TestSdpaFusion:
    @pytest.mark.parametrize("mask_kind", ["none", "input"])
    def test_generic_mask_kept(self, mask_kind):
        net = _sdpa_net(mask_kind)
        rng = np.random.default_rng(0)
        feeds = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in net.inputs}
        engine = _build(net, 2)
        (att,) = [lay for lay in engine.network.layers if lay.op_type == "Attention"]
        assert att.attr("causal") == 0 and att.attr("scale") == pytest.approx(0.5)
        assert len(att.inputs) == (4 if mask_kind == "input" else 3)
        with _build(net, 0).create_execution_context() as c0, \
                engine.create_execution_context() as c2:
            ref, out = c0.execute(feeds), c2.execute(feeds)
        for name in ref:
            np.testing.assert_allclose(out[name], ref[name], atol=1e-5)


class TestSiluFusion:
    def test_plain_silu(self):
        net = Network("silu")
        x = net.add_input("x", np.float32, (3, 8))
        s = net.add_layer("Sigmoid", [x]).outputs[0]
        y = net.add_layer("Mul", [s, x]).outputs[0]
        net.mark_output(net.add_layer("Add", [y, y]).outputs[0])
        engine = _build(net, 2)
        assert [lay.op_type for lay in engine.network.layers] == ["Silu", "Add"]
        xv = np.linspace(-30, 30, 24, dtype=np.float32).reshape(3, 8)
        with engine.create_execution_context() as ctx:
            out = next(iter(ctx.execute({"x": xv}).values()))
        np.testing.assert_allclose(out, 2 * xv / (1 + np.exp(-xv)), rtol=1e-6, atol=1e-6)

"""Tests of dist_rt.models.moe, including the dense dispatch against a sparse reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from dist_rt.models._graph import GraphBuilder
from dist_rt.models.moe import MoEConfig, make_moe, moe_ffn, sample_inputs

TINY = MoEConfig(vocab=40, hidden=16, layers=2, heads=4, kv_heads=2, experts=4, top_k=2,
                 ffn=24, max_seq=16)


def _sparse_reference(x, router, w1, w3, w2, k):
    """Per-token loop: run only the top-k experts, weight by renormalized softmax gates."""
    tokens = x.reshape(-1, x.shape[-1]).astype(np.float64)
    logits = tokens @ router
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.zeros_like(tokens)
    for t, row in enumerate(probs):
        top = np.argsort(-row, kind="stable")[:k]
        gates = row[top] / row[top].sum()
        for e, gate in zip(top, gates, strict=True):
            a = tokens[t] @ w1[e]
            a = a / (1 + np.exp(-a)) * (tokens[t] @ w3[e])
            out[t] += gate * (a @ w2[e])
    return out.reshape(x.shape)


class TestMoE:
    @pytest.mark.parametrize("batch,seq", [(1, 1), (2, 7)])
    def test_runs_finite(self, ort_run, batch, seq):
        (logits,) = ort_run(make_moe(TINY), sample_inputs(TINY, batch, seq, seed=6))
        assert logits.shape == (batch, seq, TINY.vocab) and np.isfinite(logits).all()
        assert 0.1 < logits.std() < 10

    def test_deterministic(self):
        assert make_moe(TINY).SerializeToString() == make_moe(TINY).SerializeToString()

    @pytest.mark.parametrize("top_k", [1, 2])
    def test_dense_dispatch_matches_sparse(self, ort_run, top_k):
        cfg = MoEConfig(hidden=16, experts=4, top_k=top_k, ffn=24)
        g = GraphBuilder("moe_block", "float32", seed=7)
        x = g.add_input("x", TensorProto.FLOAT, ["batch", "seq", cfg.hidden])
        g.add_output(moe_ffn(g, x, cfg, 0), TensorProto.FLOAT, ["batch", "seq", cfg.hidden],
                     name="y")
        model = g.build()
        w = {t.name.rsplit(".", 1)[-1]: t for t in model.graph.initializer}
        from onnx import numpy_helper

        router, w1, w3, w2 = (numpy_helper.to_array(w[n]) for n in ("weight", "w1", "w3", "w2"))
        xs = np.random.default_rng(0).standard_normal((2, 5, cfg.hidden)).astype(np.float32)
        (y,) = ort_run(model, {"x": xs})
        ref = _sparse_reference(xs, router, w1, w3, w2, top_k)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)

    def test_expert_weights_lead_with_e(self):
        model = make_moe(TINY)
        dims = {t.name: list(t.dims) for t in model.graph.initializer}
        p = "model.layers.0.block_sparse_moe"
        assert dims[f"{p}.experts.w1"] == [4, 16, 24]
        assert dims[f"{p}.experts.w2"] == [4, 24, 16]
        ops = {n.op_type for n in model.graph.node}
        assert {"TopK", "ScatterElements", "ReduceSum"} <= ops

    def test_bad_config(self):
        with pytest.raises(ValueError, match="top_k"):
            MoEConfig(experts=2, top_k=3)


def _capacity_reference(x, router, w1, w3, w2, cfg):
    """GShard by hand: per group, place the (choice, token) assignments in order; drop those
    whose expert already holds C tokens."""
    g, h = cfg.groups, x.shape[-1]
    tokens = x.reshape(g, -1, h).astype(np.float64)
    cap = cfg.capacity(tokens.shape[0] * tokens.shape[1])
    out = np.zeros_like(tokens)
    for grp in range(g):
        logits = tokens[grp] @ router
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :cfg.top_k]
        fill = np.zeros(cfg.experts, int)
        for choice in range(cfg.top_k):
            for t, row in enumerate(top):
                e = row[choice]
                fill[e] += 1
                if fill[e] > cap:
                    continue
                gate = probs[t, e] / probs[t, row].sum()
                a = tokens[grp, t] @ w1[e]
                a = a / (1 + np.exp(-a)) * (tokens[grp, t] @ w3[e])
                out[grp, t] += gate * (a @ w2[e])
    return out.reshape(x.shape)


class TestCapacityMoE:
    # factor 0.5: C = 2 slots for 12 assignments over 4 experts, so some are dropped.
    @pytest.mark.parametrize("experts,factor", [(4, 1.25), (4, 0.5), (6, 1.0)])
    def test_matches_gshard_reference(self, ort_run, experts, factor):
        from onnx import numpy_helper

        from dist_rt.models.moe import moe_capacity_ffn

        cfg = MoEConfig(hidden=16, experts=experts, top_k=2, ffn=24, dispatch="capacity",
                        capacity_factor=factor, groups=2)
        g = GraphBuilder("moe_block", "float32", seed=7)
        x = g.add_input("x", TensorProto.FLOAT, [2, 6, cfg.hidden])
        g.add_output(moe_capacity_ffn(g, x, cfg, 0, 12), TensorProto.FLOAT, [2, 6, cfg.hidden],
                     name="y")
        model = g.build()
        w = {t.name.rsplit(".", 1)[-1]: numpy_helper.to_array(t)
             for t in model.graph.initializer}
        xs = np.random.default_rng(0).standard_normal((2, 6, cfg.hidden)).astype(np.float32)
        (y,) = ort_run(model, {"x": xs})
        ref = _capacity_reference(xs, w["weight"], w["w1"], w["w3"], w["w2"], cfg)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)

    def test_full_model_static_shapes(self, ort_run):
        cfg = MoEConfig(vocab=40, hidden=16, experts=4, ffn=24, max_seq=16, dispatch="capacity")
        model = make_moe(cfg)
        feeds = sample_inputs(cfg)
        assert feeds["input_ids"].shape == cfg.tokens_shape
        (logits,) = ort_run(model, feeds)
        assert logits.shape == (*cfg.tokens_shape, cfg.vocab) and np.isfinite(logits).all()
        ops = {n.op_type for n in model.graph.node}
        assert {"OneHot", "CumSum", "Einsum"} <= ops and "ScatterElements" not in ops

    def test_bad_capacity_config(self):
        with pytest.raises(ValueError, match="dispatch"):
            MoEConfig(dispatch="sparse")
        with pytest.raises(ValueError, match="groups"):
            MoEConfig(dispatch="capacity", groups=3).capacity(16)

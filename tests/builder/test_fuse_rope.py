"""fuse_rope: the exported rotate_half RoPE pattern becomes one dist_rt::RotaryHalf layer."""

from __future__ import annotations

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig
from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs


def _llama(layers: int = 2):
    cfg = LlamaConfig(layers=layers, hidden=64, heads=4, kv_heads=2, mlp=96, vocab=50,
                      max_seq=32)
    return cfg, dist_rt.parse_onnx(make_llama(cfg))


class TestFuseRope:
    def test_every_q_and_k_rope_is_fused(self):
        cfg, net = _llama()
        engine = Builder(BuilderConfig(device="cpu", optimization_level=2)).build(net)
        ops = [lay.op_type for lay in engine.network.layers]
        # fuse_rope_pair then merges each layer's q and k RoPE (test_fuse_rope_pair.py)
        assert ops.count("RotaryHalf") + 2 * ops.count("RotaryHalfPair") == 2 * cfg.layers
        assert "Neg" not in ops and "Concat" not in ops
        assert engine.build_notes["fuse_rope"] == f"{2 * cfg.layers} RoPE patterns fused"

    @pytest.mark.parametrize("batch, seq", [(1, 1), (2, 7), (3, 16)])
    def test_fused_equals_unfused(self, batch, seq):
        cfg, net = _llama()
        fused = Builder(BuilderConfig(device="cpu", optimization_level=2)).build(net)
        ref = Builder(BuilderConfig(device="cpu", optimization_level=0)).build(net)
        feeds = sample_inputs(cfg, batch, seq, seed=batch + seq)
        with fused.create_execution_context() as a, ref.create_execution_context() as b:
            out, want = a.execute(feeds)["logits"], b.execute(feeds)["logits"]
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)

    def test_op_matches_formula(self):
        from dist_rt.ops import RunContext, get_op

        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 3, 5, 8)).astype(np.float32)
        cos, sin = (rng.standard_normal((1, 1, 5, 8)).astype(np.float32) for _ in range(2))
        op = get_op("RotaryHalf", "dist_rt")
        (y,) = op._run(None, [x, cos, sin], RunContext(xp=np))
        rot = np.concatenate([-x[..., 4:], x[..., :4]], axis=-1)
        np.testing.assert_allclose(y, x * cos + rot * sin, rtol=1e-6)

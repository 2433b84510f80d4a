"""Tests of dist_rt.models.gpt2."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt.models.gpt2 import GPT2Config, make_gpt2, sample_inputs

TINY = GPT2Config(vocab=50, hidden=32, layers=2, heads=4, max_seq=16)


class TestGPT2:
    @pytest.mark.parametrize("batch,seq", [(1, 1), (2, 7), (1, 16)])
    def test_runs_finite(self, ort_run, batch, seq):
        (logits,) = ort_run(make_gpt2(TINY), sample_inputs(TINY, batch, seq, seed=2))
        assert logits.shape == (batch, seq, TINY.vocab) and logits.dtype == np.float32
        assert np.isfinite(logits).all() and 0.1 < logits.std() < 10

    def test_deterministic(self):
        assert make_gpt2(TINY).SerializeToString() == make_gpt2(TINY).SerializeToString()

    def test_causal(self, ort_run):
        feeds = sample_inputs(TINY, 1, 5)
        (ref,) = ort_run(make_gpt2(TINY), feeds)
        feeds["input_ids"][0, -1] = (feeds["input_ids"][0, -1] + 1) % TINY.vocab
        (got,) = ort_run(make_gpt2(TINY), feeds)
        np.testing.assert_allclose(got[:, :-1], ref[:, :-1], rtol=1e-5, atol=1e-5)

    def test_exporter_patterns(self):
        model = make_gpt2(TINY)
        ops = [n.op_type for n in model.graph.node]
        assert {"Split", "Trilu", "LayerNormalization", "Tanh", "Pow"} <= set(ops)
        names = {t.name for t in model.graph.initializer}
        assert "transformer.h.0.attn.c_attn.weight" in names
        assert "lm_head.weight" not in names  # tied to wte

    def test_fp16(self, ort_run):
        cfg = GPT2Config(**{**TINY.__dict__, "dtype": "float16"})
        (logits,) = ort_run(make_gpt2(cfg), sample_inputs(cfg, 2, 7))
        assert logits.dtype == np.float32 and np.isfinite(logits).all()

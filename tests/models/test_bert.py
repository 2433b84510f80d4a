"""Tests of dist_rt.models.bert."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt.models.bert import BertConfig, make_bert, sample_inputs

TINY = BertConfig(vocab=50, hidden=32, layers=2, heads=4, intermediate=48, max_seq=16)


class TestBert:
    @pytest.mark.parametrize("batch,seq", [(1, 1), (2, 7), (3, 16)])
    def test_runs_finite(self, ort_run, batch, seq):
        hidden, pooled = ort_run(make_bert(TINY), sample_inputs(TINY, batch, seq, seed=3))
        assert hidden.shape == (batch, seq, TINY.hidden)
        assert pooled.shape == (batch, TINY.hidden)
        assert np.isfinite(hidden).all() and np.isfinite(pooled).all()
        assert np.abs(pooled).max() <= 1.0  # Tanh

    def test_deterministic(self):
        assert make_bert(TINY).SerializeToString() == make_bert(TINY).SerializeToString()

    def test_padding_is_masked(self, ort_run):
        # Tokens behind attention_mask == 0 must not change the unmasked positions.
        feeds = sample_inputs(TINY, 2, 6)
        assert feeds["attention_mask"][1, -1] == 0
        hidden, _ = ort_run(make_bert(TINY), feeds)
        feeds["input_ids"][1, -1] = (feeds["input_ids"][1, -1] + 1) % TINY.vocab
        hidden2, _ = ort_run(make_bert(TINY), feeds)
        np.testing.assert_allclose(hidden2[1, :-1], hidden[1, :-1], rtol=1e-5, atol=1e-5)

    def test_exporter_patterns(self):
        model = make_bert(TINY)
        ops = {n.op_type for n in model.graph.node}
        assert {"Erf", "LayerNormalization", "Gemm", "Tanh", "Cast", "Sub"} <= ops
        assert [o.name for o in model.graph.output] == ["last_hidden_state", "pooler_output"]
        assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]

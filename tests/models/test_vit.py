"""Tests of dist_rt.models.vit."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt.models.vit import ViTConfig, make_vit, sample_inputs

TINY = ViTConfig(image=8, patch=4, hidden=32, layers=2, heads=4, mlp=48, classes=5)


class TestViT:
    @pytest.mark.parametrize("batch", [1, 2])
    def test_runs_finite(self, ort_run, batch):
        (logits,) = ort_run(make_vit(TINY), sample_inputs(TINY, batch, seed=4))
        assert logits.shape == (batch, TINY.classes) and np.isfinite(logits).all()
        assert 0.05 < logits.std() < 10

    def test_batch_rows_independent(self, ort_run):
        feeds = sample_inputs(TINY, 2)
        (both,) = ort_run(make_vit(TINY), feeds)
        (one,) = ort_run(make_vit(TINY), {"pixel_values": feeds["pixel_values"][1:]})
        np.testing.assert_allclose(one[0], both[1], rtol=1e-5, atol=1e-5)

    def test_deterministic(self):
        assert make_vit(TINY).SerializeToString() == make_vit(TINY).SerializeToString()

    def test_exporter_patterns(self):
        model = make_vit(TINY)
        ops = {n.op_type for n in model.graph.node}
        assert {"Conv", "Concat", "Expand", "LayerNormalization", "Erf", "Gemm"} <= ops
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        strides = next(a for a in conv.attribute if a.name == "strides")
        assert list(strides.ints) == [TINY.patch, TINY.patch]

    def test_bad_config(self):
        with pytest.raises(ValueError, match="patch"):
            ViTConfig(image=10, patch=4)

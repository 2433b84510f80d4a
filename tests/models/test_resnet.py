"""Tests of dist_rt.models.resnet."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt.models.resnet import ResNetConfig, make_resnet, sample_inputs

TINY = ResNetConfig(image=16, widths=(4, 8), blocks=(1, 1), classes=5)


class TestResNet:
    @pytest.mark.parametrize("batch", [1, 2])
    def test_runs_finite(self, ort_run, batch):
        (logits,) = ort_run(make_resnet(TINY), sample_inputs(TINY, batch, seed=5))
        assert logits.shape == (batch, TINY.classes) and np.isfinite(logits).all()
        assert 0.05 < logits.std() < 20

    def test_deeper_and_fp16(self, ort_run):
        cfg = ResNetConfig(image=20, widths=(4, 8, 8), blocks=(2, 1, 1), dtype="float16")
        (logits,) = ort_run(make_resnet(cfg), sample_inputs(cfg, 2))
        assert logits.dtype == np.float32 and np.isfinite(logits).all()

    def test_deterministic(self):
        assert make_resnet(TINY).SerializeToString() == make_resnet(TINY).SerializeToString()

    def test_exporter_patterns(self):
        model = make_resnet(TINY)
        ops = {n.op_type for n in model.graph.node}
        assert {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "GlobalAveragePool",
                "Flatten", "Gemm"} <= ops
        names = {t.name for t in model.graph.initializer}
        assert "layer2.0.downsample.0.weight" in names
        assert "layer1.0.downsample.0.weight" not in names  # same width and stride

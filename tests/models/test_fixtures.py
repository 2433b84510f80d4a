"""The real PyTorch-dynamo exports in tests/fixtures: onnxruntime reproduces PyTorch.

The fixtures come from ``tests/fixtures/make_fixtures.py`` (needs torch; not run here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
class TestFixtures:
    def test_onnxruntime_matches_pytorch(self, ort_run, name):
        model = onnx.load(str(FIXTURES / f"{name}.onnx"))
        data = np.load(FIXTURES / f"{name}.npz")
        feeds = {k[3:]: data[k] for k in data.files if k.startswith("in_")}
        assert list(feeds) == MANIFEST[name]["inputs"]
        outs = ort_run(model, feeds)
        expected = [data[f"out_{i}"] for i in range(len(outs))]
        assert len(expected) == sum(k.startswith("out_") for k in data.files)
        for got, want in zip(outs, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    def test_small_standard_and_dynamic(self, name):
        path = FIXTURES / f"{name}.onnx"
        assert path.stat().st_size < 300 * 1024
        model = onnx.load(str(path))
        assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
        assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
        batch = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param, "batch dim should be symbolic"

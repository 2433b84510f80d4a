"""models.quantize: MatMul weights -> DequantizeLinear(int8, per-column scale)."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
from dist_rt.models.quantize import quantize_matmul_weights, quantize_weights


def test_quantize_weights_round_trip():
    w = np.random.default_rng(0).standard_normal((40, 7)).astype(np.float32)
    w[:, 3] = 0
    q, scale = quantize_weights(w)
    assert q.dtype == np.int8 and scale.shape == (7,) and scale[3] == 1
    assert np.abs(q).max() == 127
    np.testing.assert_allclose(q * scale, w, atol=float(scale.max()) / 2 + 1e-7)


@pytest.mark.parametrize("dtype, opset, tol", [("float32", 18, 0.05), ("float16", 19, 0.05)])
def test_llama_stays_close(ort_run, dtype, opset, tol):
    cfg = LlamaConfig(layers=1, hidden=64, heads=4, kv_heads=2, mlp=128, vocab=97,
                      dtype=dtype, tie_embeddings=True)
    model = make_llama(cfg)
    quantized = quantize_matmul_weights(model, min_elements=64 * 64)
    ops = [n.op_type for n in quantized.graph.node]
    # q/o (64x64) and the MLP are quantized; k/v (64x32) are below min_elements; the tied
    # embedding is read by Gather too (its Transpose feeds lm_head), so it stays float.
    assert ops.count("DequantizeLinear") == 5
    assert {o.version for o in quantized.opset_import if o.domain == ""} == {opset}
    feeds = sample_inputs(cfg, 1, 6)
    (ref,) = ort_run(model, feeds)
    (got,) = ort_run(quantized, feeds)
    assert np.max(np.abs(got - ref)) <= tol * np.max(np.abs(ref))

"""One engine with an optimization profile runs every shape inside it, plans memory for max,
and refuses shapes outside it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig
from dist_rt.errors import InputError
from dist_rt.models import LlamaConfig, make_llama

CFG = LlamaConfig(vocab=96, hidden=32, layers=1, heads=4, kv_heads=2, mlp=64, max_seq=512)


@pytest.fixture(scope="module", params=[False, True], ids=["static_targets", "shape_chains"])
def built(request):
    model = make_llama(CFG, dynamic_shapes=request.param)
    config = BuilderConfig(verify=True)
    config.add_profile("p", min={"input_ids": (1, 1)}, opt={"input_ids": (1, 16)},
                       max={"input_ids": (8, 512)})
    engine = Builder(config).build(dist_rt.parse_onnx(model))
    return engine, ort.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch, seq", [(1, 1), (8, 1), (3, 37), (1, 512), (8, 512)])
def test_shapes_inside_profile_match_onnxruntime(built, batch, seq):
    engine, session = built
    ids = np.random.default_rng(batch * 1000 + seq).integers(0, CFG.vocab, (batch, seq))
    with engine.create_execution_context() as ctx:
        got = ctx.execute({"input_ids": ids})["logits"]
    want = session.run(None, {"input_ids": ids})[0]
    assert got.shape == (batch, seq, CFG.vocab)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_memory_is_planned_for_max(built):
    engine, _ = built
    assert engine.memory_plan["input_shapes"] == {"input_ids": [8, 512]}
    # The logits alone take 8*512*vocab floats; the arena holds at least the largest tensor.
    assert engine.activation_bytes >= 8 * 512 * CFG.vocab * 4


@pytest.mark.parametrize("shape", [(9, 4), (1, 513), (2, 0)])
def test_outside_profile_is_input_error(built, shape):
    engine, _ = built
    with engine.create_execution_context() as ctx, \
            pytest.raises(InputError, match=r"outside profile 'p' bounds min \(1, 1\)"):
        ctx.execute({"input_ids": np.zeros(shape, np.int64)})

"""Tests of dist_rt.models.llama: checker-clean, runs in onnxruntime, finite, deterministic."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dist_rt import models
from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs

TINY = LlamaConfig(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, mlp=48, max_seq=16)


class TestLlama:
    @pytest.mark.parametrize("batch,seq", [(1, 1), (2, 7), (1, 16)])
    def test_runs_finite(self, ort_run, batch, seq):
        (logits,) = ort_run(make_llama(TINY), sample_inputs(TINY, batch, seq, seed=1))
        assert logits.shape == (batch, seq, TINY.vocab)
        assert logits.dtype == np.float32
        assert np.isfinite(logits).all()
        # Scaled init keeps the logits O(1), not vanishing and not exploding.
        assert 0.1 < logits.std() < 10

    def test_default_model(self, ort_run):
        model = models.default_model()
        inp = model.graph.input[0]
        assert inp.name == "input_ids"
        assert [d.dim_param for d in inp.type.tensor_type.shape.dim] == ["batch", "seq"]
        (logits,) = ort_run(model, sample_inputs(LlamaConfig(), 2, 7))
        assert logits.shape == (2, 7, 1000) and np.isfinite(logits).all()

    def test_deterministic_for_seed(self):
        a, b = make_llama(TINY), make_llama(TINY)
        assert a.SerializeToString() == b.SerializeToString()
        c = make_llama(LlamaConfig(**{**TINY.__dict__, "seed": 1}))
        assert a.graph.initializer[0].raw_data != c.graph.initializer[0].raw_data

    @pytest.mark.parametrize("kw", [{"dynamic_shapes": True}, {"batch": 2, "seq": 7}])
    def test_variants_match(self, ort_run, kw):
        feeds = sample_inputs(TINY, 2, 7)
        (ref,) = ort_run(make_llama(TINY), feeds)
        (got,) = ort_run(make_llama(TINY, **kw), feeds)
        np.testing.assert_array_equal(got, ref)

    def test_causal(self, ort_run):
        # Changing the last token must not change earlier positions' logits.
        feeds = sample_inputs(TINY, 1, 6)
        (ref,) = ort_run(make_llama(TINY), feeds)
        feeds["input_ids"][0, -1] = (feeds["input_ids"][0, -1] + 1) % TINY.vocab
        (got,) = ort_run(make_llama(TINY), feeds)
        np.testing.assert_allclose(got[:, :-1], ref[:, :-1], rtol=1e-5, atol=1e-5)
        assert not np.allclose(got[:, -1], ref[:, -1])

    def test_fp16_tied(self, ort_run):
        cfg = LlamaConfig(**{**TINY.__dict__, "dtype": "float16", "tie_embeddings": True})
        model = make_llama(cfg)
        assert "lm_head.weight" not in {t.name for t in model.graph.initializer}
        (logits,) = ort_run(model, sample_inputs(cfg, 2, 7))
        assert logits.dtype == np.float32 and np.isfinite(logits).all()

    def test_exporter_like_names_and_ops(self):
        model = make_llama(TINY)
        names = {t.name for t in model.graph.initializer}
        assert "model.layers.0.self_attn.q_proj.weight" in names
        assert "model.layers.1.mlp.down_proj.weight" in names
        ops = {n.op_type for n in model.graph.node}
        assert {"Range", "Where", "Expand", "Softmax", "ReduceMean", "Sqrt"} <= ops
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
        assert model.opset_import[0].version == 18
        q = next(t for t in model.graph.initializer if t.name.endswith("q_proj.weight"))
        k = next(t for t in model.graph.initializer if t.name.endswith("k_proj.weight"))
        assert list(q.dims) == [32, 32] and list(k.dims) == [32, 16]  # (in, out), GQA

    def test_bad_config(self):
        with pytest.raises(ValueError, match="kv_heads"):
            LlamaConfig(heads=8, kv_heads=3)


class TestWrite:
    def test_external_data_aligned_and_loadable(self, tmp_path, ort_run):
        model = make_llama(TINY)
        path = models.write(model, tmp_path / "m.onnx", external_data=True)
        assert (tmp_path / "m.onnx.data").exists()
        loaded = onnx.load(str(path), load_external_data=False)
        external = [t for t in loaded.graph.initializer if t.data_location == 1]
        assert external, "large weights should be external"
        for t in external:
            info = {e.key: e.value for e in t.external_data}
            assert info["location"] == "m.onnx.data"
            assert int(info["offset"]) % 64 == 0
        feeds = sample_inputs(TINY, 1, 5)
        (ref,) = ort_run(model, feeds)
        import onnxruntime as ort

        (got,) = ort.InferenceSession(str(path)).run(None, feeds)
        np.testing.assert_array_equal(got, ref)
        # The in-memory model is untouched.
        assert all(t.data_location == 0 for t in model.graph.initializer)

    def test_make_llama_external_dir(self, tmp_path):
        model = make_llama(TINY, external_data_dir=tmp_path)
        assert (tmp_path / "llama.onnx.data").exists()
        models.write(model, tmp_path / "llama.onnx")
        import onnxruntime as ort

        feeds = sample_inputs(TINY, 1, 3)
        (got,) = ort.InferenceSession(str(tmp_path / "llama.onnx")).run(None, feeds)
        assert np.isfinite(got).all()

    def test_inline(self, tmp_path):
        path = models.write(make_llama(TINY), tmp_path / "sub" / "m.onnx")
        assert path.exists() and not (tmp_path / "sub" / "m.onnx.data").exists()


class TestRegistry:
    @pytest.mark.parametrize("name", sorted(models.REGISTRY))
    def test_every_generator_builds_and_runs(self, ort_run, name):
        spec = models.REGISTRY[name]
        cfg = spec.config()
        model = spec.make(cfg)
        # Defaults stay small: llama (the default CLI model) is ~7 MB, the others far less.
        assert len(model.SerializeToString()) < 8 << 20
        outs = ort_run(model, spec.sample_inputs(cfg, 2, seed=0))
        assert all(np.isfinite(o).all() for o in outs)

    def test_make_overrides(self):
        model = models.make("llama", layers=1, hidden=32, heads=4, kv_heads=2, vocab=20)
        assert model.graph.output[0].type.tensor_type.shape.dim[2].dim_value == 20
        with pytest.raises(KeyError, match="unknown model"):
            models.make("nope")


def test_external_data_memmap_slice(tmp_path):
    """A rank can read a column block of a weight straight from the memory-mapped file."""
    model = make_llama(TINY)
    models.write(model, tmp_path / "m.onnx", external_data=True)
    loaded = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    name = "model.layers.0.mlp.up_proj.weight"
    t = next(t for t in loaded.graph.initializer if t.name == name)
    info = {e.key: int(e.value) for e in t.external_data if e.key != "location"}
    mm = np.memmap(tmp_path / "m.onnx.data", dtype=np.float32, mode="r",
                   offset=info["offset"], shape=tuple(t.dims))
    full = onnx.numpy_helper.to_array(
        next(t for t in model.graph.initializer if t.name == name))
    np.testing.assert_array_equal(mm[:, 24:48], full[:, 24:48])

"""Engine.refit: new weights equal a fresh build; clear errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from _builder_nets import mlp, needs

from dist_rt import Builder, BuilderConfig, Engine, parse_onnx
from dist_rt.errors import BuildError
from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
from dist_rt.network import Network
from dist_rt.weights import Weights

TINY = LlamaConfig(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, mlp=48, max_seq=16)
#: Weights that fuse_parallel_matmul merges (q/k/v, gate/up) at level 2.
MERGED = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
          "model.layers.0.mlp.gate_proj.weight"]
TOL = {"fp32": 1e-5, "fp16": 2e-3}


def _run(engine, x):
    with engine.create_execution_context() as ctx:
        return next(iter(ctx.execute({"x": x}).values()))


@needs("MatMul", "Relu", "Add", "Transpose")
class TestRefit:
    @pytest.mark.parametrize("precision", ["fp32", "fp16"])
    def test_matches_fresh_build(self, precision):
        rng = np.random.default_rng(0)
        net, _ = mlp(rng)
        x = rng.standard_normal((3, 7)).astype(np.float32)
        engine = Builder(BuilderConfig(precision=precision)).build(net)
        new = {"w1": rng.standard_normal((7, 13)).astype(np.float32),
               "w2": rng.standard_normal((13, 5)).astype(np.float32)}
        assert sorted(engine.refit(new)) == ["w1", "w2"]
        fresh_net = net.copy()
        for name, value in new.items():
            fresh = fresh_net.add_constant(name + ".new", value)
            fresh_net.replace_uses(fresh_net.tensors[name], fresh)
        fresh_engine = Builder(BuilderConfig(precision=precision)).build(fresh_net)
        np.testing.assert_allclose(_run(engine, x), _run(fresh_engine, x), rtol=1e-6)

    def test_errors_name_the_weight(self):
        rng = np.random.default_rng(1)
        net, _ = mlp(rng)
        engine = Builder(BuilderConfig()).build(net)
        with pytest.raises(BuildError, match=r"'w1' has shape \(7, 13\).*got \(13, 7\)"):
            engine.refit({"w1": np.zeros((13, 7), np.float32)})
        with pytest.raises(BuildError, match="'w1' is float32 in the engine, got float64"):
            engine.refit({"w1": np.zeros((7, 13))})
        with pytest.raises(BuildError, match="'nope' is not a weight of this engine"):
            engine.refit({"nope": np.zeros(3, np.float32)})

    def test_folded_weight_is_reported(self):
        net = Network("folded")
        x = net.add_input("x", np.float32, (2, 4))
        w = net.add_constant("w", np.ones((4, 4), np.float32))
        net.mark_output(net.add_matmul(x, net.add_transpose(w, [1, 0])))
        engine = Builder(BuilderConfig()).build(net)
        with pytest.raises(BuildError, match=r"'w' was constant-folded by the builder "
                                             r"\(Transpose layer '.*'"):
            engine.refit({"w": np.ones((4, 4), np.float32)})

    def test_old_contexts_keep_old_weights(self):
        rng = np.random.default_rng(2)
        net, _ = mlp(rng)
        x = rng.standard_normal((2, 7)).astype(np.float32)
        engine = Builder(BuilderConfig()).build(net)
        with engine.create_execution_context() as old:
            before = old.execute({"x": x})
            engine.refit({"w2": np.zeros((13, 5), np.float32)})
            np.testing.assert_array_equal(old.execute({"x": x})[net.outputs[0].name],
                                          before[net.outputs[0].name])
        assert not _run(engine, x).any()


def _logits(engine, feeds):
    with engine.create_execution_context() as ctx:
        return ctx.execute(feeds)["logits"]


def _llama(cfg=TINY, fold_constants=True):
    return parse_onnx(make_llama(cfg), fold_constants=fold_constants)


def _new_weights(net, names, seed=3):
    rng = np.random.default_rng(seed)
    return {n: (rng.standard_normal(net.tensors[n].shape) * 0.2).astype(np.float32)
            for n in names}


def _fresh(net, new, precision):
    fresh_net = net.copy()  # weights shared, so give the copy new Weights objects
    for name, value in new.items():
        fresh_net.tensors[name].weights = Weights(value)
    return Builder(BuilderConfig(precision=precision)).build(fresh_net)


class TestRefitMerged:
    """Weights fuse_parallel_matmul concatenated (q/k/v, gate/up) refit into their slice."""

    @pytest.mark.parametrize("precision", ["fp32", "fp16"])
    def test_matches_fresh_build(self, precision):
        net = _llama()
        engine = Builder(BuilderConfig(precision=precision)).build(net)
        assert not any(engine.network.tensors.get(n) for n in MERGED)  # really merged
        feeds = sample_inputs(TINY, 2, 5)
        before = _logits(engine, feeds)
        new = _new_weights(net, MERGED)
        assert engine.refit(new) == MERGED
        after = _logits(engine, feeds)
        assert np.abs(after - before).max() > 1e-2  # the refit changed something
        np.testing.assert_allclose(after, _logits(_fresh(net, new, precision), feeds),
                                   rtol=TOL[precision], atol=TOL[precision])

    @pytest.mark.parametrize("precision", ["fp32", "fp16"])
    def test_loaded_engine(self, tmp_path, precision):
        net = _llama()
        path = tmp_path / "llama.plan"
        Builder(BuilderConfig(precision=precision)).build(net).save(path)
        engine = Engine.load(path)
        feeds = sample_inputs(TINY, 1, 4)
        before = _logits(engine, feeds)
        new = _new_weights(net, MERGED)
        engine.refit(new)  # the merged weights are read-only maps of the file: copied
        np.testing.assert_allclose(_logits(engine, feeds),
                                   _logits(_fresh(net, new, precision), feeds),
                                   rtol=TOL[precision], atol=TOL[precision])
        np.testing.assert_array_equal(_logits(Engine.load(path), feeds), before)

    def test_old_contexts_keep_old_weights(self):
        net = _llama()
        engine = Builder(BuilderConfig()).build(net)
        feeds = sample_inputs(TINY, 1, 4)
        with engine.create_execution_context() as old:
            before = old.execute(feeds)["logits"]
            engine.refit(_new_weights(net, MERGED[:1]))
            np.testing.assert_array_equal(old.execute(feeds)["logits"], before)

    def test_errors_name_the_weight(self):
        engine = Builder(BuilderConfig()).build(_llama())
        q = MERGED[0]
        with pytest.raises(BuildError, match=rf"'{q}' has shape \(32, 32\).*got \(32, 16\)"):
            engine.refit({q: np.zeros((32, 16), np.float32)})
        with pytest.raises(BuildError, match=f"'{q}' is float32 in the engine, got float64"):
            engine.refit({q: np.zeros((32, 32))})

    def test_checked_before_any_is_replaced(self):
        net = _llama()
        engine = Builder(BuilderConfig()).build(net)
        feeds = sample_inputs(TINY, 1, 4)
        before = _logits(engine, feeds)
        with pytest.raises(BuildError, match=MERGED[2]):
            engine.refit({MERGED[0]: np.zeros((32, 32), np.float32),
                          MERGED[2]: np.zeros((32, 47), np.float32)})
        np.testing.assert_array_equal(_logits(engine, feeds), before)

    def test_tied_embedding_is_refused(self):
        cfg = LlamaConfig(**{**TINY.__dict__, "tie_embeddings": True})
        # Unfolded at import (the importer folds small tables itself), as for a real model.
        net = _llama(cfg, fold_constants=False)
        engine = Builder(BuilderConfig()).build(net)
        # The Gather still reads the weight, but lm_head reads a folded transpose of it.
        name = "model.embed_tokens.weight"
        with pytest.raises(BuildError, match=f"'{name}' was constant-folded by the builder"):
            engine.refit({name: np.zeros(net.tensors[name].shape, np.float32)})

    def test_weight_folded_on_import_is_refused(self):
        cfg = LlamaConfig(**{**TINY.__dict__, "tie_embeddings": True})
        net = _llama(cfg)  # the importer folds the small transposed table itself
        engine = Builder(BuilderConfig()).build(net)
        name = "model.embed_tokens.weight"
        with pytest.raises(BuildError, match=f"'{name}'.*folded on import"):
            engine.refit({name: np.zeros(net.tensors[name].shape, np.float32)})

"""Engine.refit: new weights equal a fresh build; clear errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from _builder_nets import mlp, needs

from dist_rt import Builder, BuilderConfig
from dist_rt.errors import BuildError
from dist_rt.network import Network


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
        with pytest.raises(BuildError, match="'w' was folded or fused away"):
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

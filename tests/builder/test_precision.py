"""precision: fp16/bf16 engines keep fp32 bindings and stay close to fp32 results."""

from __future__ import annotations

import numpy as np
import pytest
from _builder_nets import mlp, mlp_reference, needs, run

from dist_rt import Builder, BuilderConfig, dtypes
from dist_rt.network import Network


@needs("Cast")
class TestPrecision:
    @pytest.mark.parametrize("precision, dtype", [("fp16", np.float16),
                                                  ("bf16", dtypes.bfloat16)])
    @pytest.mark.parametrize("level", [0, 2])
    def test_bindings_keep_dtype(self, precision, dtype, level):
        rng = np.random.default_rng(0)
        net, w = mlp(rng)
        engine = Builder(BuilderConfig(precision=precision, optimization_level=level,
                                       verify=True)).build(net)
        assert [d for _, d, _ in engine.inputs] == [np.float32]
        assert [d for _, d, _ in engine.outputs] == [np.float32]
        assert [n for n, _, _ in engine.outputs] == [net.outputs[0].name]
        assert all(t.weights.dtype == dtype for t in engine.network.constants
                   if t.weights.dtype.kind == "f" or t.weights.dtype == dtypes.bfloat16)
        assert engine.weight_bytes * 2 == net.weight_bytes()
        x = rng.standard_normal((6, 7)).astype(np.float32)
        with engine.create_execution_context() as ctx:
            out = ctx.execute({"x": x})[net.outputs[0].name]
        assert out.dtype == np.float32
        ref = mlp_reference(x, w)
        tol = 0.02 if precision == "fp16" else 0.1
        assert np.max(np.abs(out - ref)) <= tol * (1 + np.max(np.abs(ref)))

    @needs("Cast", "Softmax")
    def test_softmax_runs_in_fp32(self):
        rng = np.random.default_rng(1)
        net = Network("sm")
        x = net.add_input("x", np.float32, (3, 9))
        net.mark_output(net.add_softmax(net.add_activation(x, "Relu")))
        engine = Builder(BuilderConfig(precision="fp16", verify=True)).build(net)
        sm = [lay for lay in engine.network.layers if lay.op_type == "Softmax"][0]
        assert sm.inputs[0].dtype == np.float32 and sm.outputs[0].dtype == np.float32
        x_val = rng.standard_normal((3, 9)).astype(np.float32)
        e = np.exp(np.maximum(x_val, 0))
        out = run(net, {"x": x_val}, precision="fp16")[net.outputs[0].name]
        np.testing.assert_allclose(out, e / e.sum(-1, keepdims=True), atol=2e-3)

    def test_int_inputs_untouched(self):
        net = Network("ints")
        x = net.add_input("x", np.int64, (4,))
        net.mark_output(net.add_activation(x, "Relu"))
        engine = Builder(BuilderConfig(precision="fp16", verify=True)).build(net)
        assert all(lay.op_type != "Cast" for lay in engine.network.layers)


@needs("Cast", "LayerNormalization")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_layernorm_island_in_fp32(precision):
    rng = np.random.default_rng(4)
    net = Network("ln")
    x = net.add_input("x", np.float32, ("batch", 10))
    scale = rng.standard_normal(10).astype(np.float32)
    bias = rng.standard_normal(10).astype(np.float32)
    ln = net.add_layer("LayerNormalization", [x, net.add_constant("s", scale),
                                              net.add_constant("b", bias)], {"axis": -1})
    net.mark_output(net.add_activation(ln.outputs[0], "Relu"))
    engine = Builder(BuilderConfig(precision=precision, verify=True)).build(net)
    layer = [lay for lay in engine.network.layers if lay.op_type == "LayerNormalization"][0]
    assert all(t.dtype == np.float32 for t in layer.inputs if t is not None)
    x_val = (rng.standard_normal((3, 10)) * 4 + 50).astype(np.float32)  # large mean
    with engine.create_execution_context() as ctx:
        out = ctx.execute({"x": x_val})[net.outputs[0].name]
    norm = (x_val - x_val.mean(-1, keepdims=True)) / np.sqrt(x_val.var(-1, keepdims=True) + 1e-5)
    ref = np.maximum(norm * scale + bias, 0)
    tol = 0.05 if precision == "fp16" else 0.3
    np.testing.assert_allclose(out, ref, atol=tol)

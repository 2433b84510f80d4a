"""fold_constants: known values become constants; results unchanged."""

from __future__ import annotations

import numpy as np
from _builder_nets import needs, run

from dist_rt.builder.config import BuilderConfig
from dist_rt.builder.passes import BuildState, fold_constants
from dist_rt.builder.verify import verify
from dist_rt.network import Network


@needs("Add", "Mul", "Shape", "Reshape")
class TestFoldConstants:
    def _net(self, rng):
        net = Network("fold")
        x = net.add_input("x", np.float32, ("batch", 6))
        a = net.add_constant("a", rng.standard_normal((6,)).astype(np.float32))
        b = net.add_constant("b", rng.standard_normal((6,)).astype(np.float32))
        ab = net.add_elementwise(a, b, "Mul")                 # constant subgraph
        y = net.add_elementwise(x, ab, "Add")
        shape = net.add_layer("Shape", [y]).outputs[0]        # (batch, 6): not foldable
        z = net.add_layer("Reshape", [y, shape]).outputs[0]
        net.mark_output(z)
        return net, a.weights.numpy() * b.weights.numpy()

    def test_folds_constant_subgraph(self):
        rng = np.random.default_rng(0)
        net, _ = self._net(rng)
        note = fold_constants.run(net, BuildState(BuilderConfig()))
        verify(net, "fold_constants")
        assert "folded 1" in note
        assert [lay.op_type for lay in net.layers] == ["Add", "Shape", "Reshape"]

    def test_same_result_as_level0(self):
        rng = np.random.default_rng(1)
        net, ab = self._net(rng)
        x = rng.standard_normal((3, 6)).astype(np.float32)
        out = run(net, {"x": x}, optimization_level=2)
        ref = run(net, {"x": x}, optimization_level=0)
        name = net.outputs[0].name
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-6)
        np.testing.assert_allclose(out[name], x + ab, rtol=1e-6)

    def test_static_shape_folds_shape_chain(self):
        rng = np.random.default_rng(2)
        net = Network("static")
        x = net.add_input("x", np.float32, (4, 6))
        shape = net.add_layer("Shape", [x]).outputs[0]
        y = net.add_layer("Reshape", [x, shape]).outputs[0]
        net.mark_output(y)
        fold_constants.run(net, BuildState(BuilderConfig()))
        verify(net, "fold_constants")
        assert [lay.op_type for lay in net.layers] == ["Reshape"]
        x_val = rng.standard_normal((4, 6)).astype(np.float32)
        np.testing.assert_array_equal(run(net, {"x": x_val})[y.name], x_val)


@needs("Transpose")
def test_large_constant_subgraph_folded():
    rng = np.random.default_rng(3)
    net = Network("wt")
    x = net.add_input("x", np.float32, ("batch", 300))
    w = rng.standard_normal((400, 300)).astype(np.float32)   # 120k elements: above the
    wt = net.add_transpose(net.add_constant("w", w), [1, 0])  # infer_shapes value limit
    net.mark_output(net.add_matmul(x, wt))
    fold_constants.run(net, BuildState(BuilderConfig()))
    verify(net, "fold_constants")
    assert [lay.op_type for lay in net.layers] == ["MatMul"]
    x_val = rng.standard_normal((2, 300)).astype(np.float32)
    np.testing.assert_allclose(run(net, {"x": x_val})[net.outputs[0].name], x_val @ w.T,
                               rtol=1e-4, atol=1e-4)

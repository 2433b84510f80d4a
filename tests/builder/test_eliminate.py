"""eliminate: no-op layers go, binding names stay, results unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from _builder_nets import needs, run

from dist_rt import dtypes
from dist_rt.builder.config import BuilderConfig
from dist_rt.builder.passes import BuildState, eliminate
from dist_rt.builder.verify import verify
from dist_rt.network import Network


def _state():
    return BuildState(BuilderConfig())


@needs("Identity", "Dropout", "Cast", "Reshape")
class TestEliminate:
    def _net(self, rng):
        net = Network("noops")
        x = net.add_input("x", np.float32, (3, 5))
        w = net.add_constant("w", rng.standard_normal((5, 5)).astype(np.float32))
        h = net.add_layer("Identity", [net.add_matmul(x, w)]).outputs[0]
        h = net.add_layer("Dropout", [h], outputs=2).outputs[0]
        h = net.add_layer("Cast", [h], {"to": dtypes.to_onnx(np.float32)}).outputs[0]
        h = net.add_reshape(h, [3, 5])
        h = net.add_activation(h, "Relu")
        y = net.add_layer("Identity", [h], outputs=["y"]).outputs[0]   # output binding
        net.add_layer("Relu", [x])                                      # dead
        net.mark_output(y)
        return net

    def test_removes_noops_and_keeps_output_name(self):
        rng = np.random.default_rng(0)
        net = self._net(rng)
        note = eliminate.run(net, _state())
        verify(net, "eliminate")
        assert [lay.op_type for lay in net.layers] == ["MatMul", "Relu"]
        assert net.outputs[0].name == "y" and "removed 5" in note and "1 dead" in note

    def test_result_matches_level0(self):
        rng = np.random.default_rng(1)
        net = self._net(rng)
        x = rng.standard_normal((3, 5)).astype(np.float32)
        np.testing.assert_array_equal(run(net, {"x": x})["y"],
                                      run(net, {"x": x}, optimization_level=0)["y"])

    def test_identity_of_input_to_output_is_kept(self):
        net = Network("passthrough")
        x = net.add_input("x", np.float32, (2,))
        net.mark_output(net.add_layer("Identity", [x], outputs=["y"]).outputs[0])
        eliminate.run(net, _state())
        verify(net, "eliminate")
        assert [lay.op_type for lay in net.layers] == ["Identity"]
        x_val = np.arange(2, dtype=np.float32)
        out = run(net, {"x": x_val})["y"]
        np.testing.assert_array_equal(out, x_val)
        assert out is not x_val

    @pytest.mark.parametrize("to", [np.float16, np.int32])
    def test_real_cast_kept(self, to):
        net = Network("cast")
        x = net.add_input("x", np.float32, (2,))
        net.mark_output(net.add_layer("Cast", [x], {"to": dtypes.to_onnx(to)}).outputs[0])
        eliminate.run(net, _state())
        assert len(net.layers) == 1

    def test_training_dropout_kept(self):
        net = Network("drop")
        x = net.add_input("x", np.float32, (4,))
        ratio = net.add_constant("ratio", np.array(0.5, np.float32))
        train = net.add_constant("train", np.array(True))
        net.mark_output(net.add_layer("Dropout", [x, ratio, train], outputs=2).outputs[0])
        eliminate.run(net, _state())
        assert len(net.layers) == 1

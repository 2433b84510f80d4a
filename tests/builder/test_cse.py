"""cse: duplicate deterministic layers merge, collectives and bindings stay, results unchanged."""

from __future__ import annotations

import numpy as np
from _builder_nets import needs, run

from dist_rt.builder.config import BuilderConfig
from dist_rt.builder.passes import BuildState, cse
from dist_rt.builder.verify import verify
from dist_rt.network import Network


def _dup_net(rng):
    net = Network("dups")
    x = net.add_input("x", np.float32, ("batch", 6))
    w = net.add_constant("w", rng.standard_normal((6, 6)).astype(np.float32))
    a = net.add_activation(net.add_matmul(x, w), "Relu")
    b = net.add_activation(net.add_matmul(x, w), "Relu")       # same chain again
    c = net.add_activation(net.add_matmul(x, w), "LeakyRelu", alpha=0.5)  # other attributes
    net.mark_output(net.add_elementwise(net.add_elementwise(a, b, "Add"), c, "Add"))
    return net, w.weights.numpy()


@needs("MatMul", "Relu", "LeakyRelu", "Add")
class TestCse:
    def test_merges_duplicates_keeps_different_attributes(self):
        net, _ = _dup_net(np.random.default_rng(0))
        note = cse.run(net, BuildState(BuilderConfig()))
        verify(net, "cse")
        ops = [lay.op_type for lay in net.layers]
        assert ops.count("MatMul") == 1 and ops.count("Relu") == 1
        assert ops.count("LeakyRelu") == 1
        assert "merged 3 layers" in note  # two MatMuls, one Relu

    def test_results_equal_level_0(self):
        net, w = _dup_net(np.random.default_rng(1))
        x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
        want = run(net, {"x": x}, optimization_level=0)
        got = run(net, {"x": x}, optimization_level=1)
        np.testing.assert_allclose(got[net.outputs[0].name], want[net.outputs[0].name],
                                   rtol=1e-6)

    def test_output_bindings_and_collectives_are_not_merged(self):
        net = Network("keep")
        x = net.add_input("x", np.float32, (4,))
        y1 = net.add_layer("Relu", [x], outputs=["y1"]).outputs[0]
        y2 = net.add_layer("Relu", [x], outputs=["y2"]).outputs[0]
        r1 = net.add_collective(x, "all_reduce")
        r2 = net.add_collective(x, "all_reduce")
        net.mark_output(y1)
        net.mark_output(y2)
        net.mark_output(net.add_elementwise(r1, r2, "Add"))
        cse.run(net, BuildState(BuilderConfig()))
        verify(net, "cse")
        ops = [lay.op_type for lay in net.layers]
        assert ops.count("Relu") == 2 and ops.count("DistCollective") == 2

    def test_equal_small_constants_merge(self):
        net = Network("consts")
        x = net.add_input("x", np.float32, (4,))
        a = net.add_elementwise(x, net.add_constant("c1", np.float32(2.0)), "Add")
        b = net.add_elementwise(x, net.add_constant("c2", np.float32(2.0)), "Add")
        net.mark_output(net.add_elementwise(a, b, "Add"))
        cse.run(net, BuildState(BuilderConfig()))
        verify(net, "cse")
        assert [lay.op_type for lay in net.layers] == ["Add", "Add"]
        assert len(net.constants) == 1

"""The shape/tensor ops on the CuPy backend agree with the NumPy backend (needs a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from node_harness import run_model_on_ops
from onnx import numpy_helper

from dist_rt.ops import RunContext

pytestmark = pytest.mark.gpu


def _run_layers(model, feeds, xp):
    """Like node_harness.run_model_on_ops, but on ``xp`` arrays."""
    from dist_rt.network import Network  # noqa: PLC0415 - keep module import light
    from dist_rt.onnx.attributes import attribute_value  # noqa: PLC0415

    graph = model.graph
    net = Network("g", opset=model.opset_import[0].version)
    values = {}
    for init in graph.initializer:
        values[init.name] = xp.asarray(numpy_helper.to_array(init))
        net.add_constant(init.name, numpy_helper.to_array(init))
    for vi, f in zip(graph.input, feeds, strict=True):
        net.add_input(vi.name, f.dtype, f.shape)
        values[vi.name] = xp.asarray(f)
    for i, node in enumerate(graph.node):
        attrs = {a.name: attribute_value(a) for a in node.attribute}
        net.add_layer(node.op_type, list(node.input), attrs, name=f"n{i}",
                      outputs=list(node.output))
    rt = RunContext(xp=xp, backend="cuda")
    for layer in net.layers:
        outs = layer.op.run(layer, [None if t is None else values[t.name] for t in layer.inputs],
                            rt)
        values.update({t.name: v for t, v in zip(layer.outputs, outs, strict=True)})
    return [values[o.name] for o in graph.output]


def test_cupy_matches_numpy():
    cupy = pytest.importorskip("cupy")
    from test_tensor_ops import c, one_node, r  # noqa: PLC0415 - shared model builders

    i64 = np.int64
    cases = [
        ("Reshape", [r(3, 5, 8), c([0, -1, 4])], {}),
        ("Slice", [r(7, 9), c([-1]), c([-100]), c([1]), c([-2])], {}),
        ("Gather", [r(7, 5), np.array([[0, -1]], i64)], {"axis": 0}),
        ("GatherND", [r(3, 4, 5), np.array([[0, 1], [2, 3]], i64)], {}),
        ("ScatterElements", [r(5, 4), np.array([[0, 2, 1, 0]], i64), r(1, 4)],
         {"axis": 0, "reduction": "add"}),
        ("Pad", [r(4, 5), c([1, 2, 3, 1])], {"mode": "reflect"}),
        ("Expand", [r(3, 1), c([2, 1, 5])], {}),
        ("Trilu", [r(2, 4, 5)], {}),
        ("OneHot", [np.array([1, -1, 3], i64), c(4), c([0.0, 1.0], np.float32)], {}),
    ]
    for op, inputs, attrs in cases:
        model, feeds = one_node(op, inputs, attrs)
        want = run_model_on_ops(model, feeds)
        got = _run_layers(model, feeds, cupy)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=1e-6, err_msg=op)

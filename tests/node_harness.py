"""Run the ONNX backend node test cases (generated in memory by onnx) straight on our ops.

A development and test helper that needs neither the importer nor the engine: each case's
graph is turned into a Network node by node, inferred, and run with the NumPy reference of
every op. ``python tests/node_harness.py Add Relu`` prints pass/fail per case.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Iterator

import numpy as np
from onnx import ModelProto, TensorProto, numpy_helper

from dist_rt import dtypes
from dist_rt.network import Network
from dist_rt.onnx.attributes import attribute_value
from dist_rt.ops import RunContext


@functools.lru_cache(maxsize=1)
def _all_cases() -> tuple:
    # Generating onnx's cases takes 15-30 s; every suite in one pytest process shares them.
    import onnx.backend.test.case.node as node_cases_mod

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(node_cases_mod.collect_testcases(None))


def node_cases(op_types: set[str] | None = None) -> Iterator[tuple[str, ModelProto, list, list]]:
    """Yield (name, model, inputs, expected outputs) of onnx's node test cases."""
    for case in _all_cases():
        ops = {n.op_type for n in case.model.graph.node}
        if op_types is not None and not ops & op_types:
            continue
        for inputs, outputs in case.data_sets or []:
            # Cases with exotic dtypes (Cast to float8...) store data as TensorProtos.
            yield case.name, case.model, [_as_array(v) for v in inputs], \
                [_as_array(v) for v in outputs]


def _as_array(value):
    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else value


def run_model_on_ops(model: ModelProto, inputs: list) -> list[np.ndarray]:
    """Build a Network from a small ModelProto (no subgraphs) and run it with the references."""
    graph = model.graph
    opsets = {o.domain or "": o.version for o in model.opset_import}
    net = Network(graph.name or "case", opset=opsets.get("", 21))
    net.opsets.update(opsets)
    for init in graph.initializer:
        net.add_constant(init.name, numpy_helper.to_array(init))
    feeds = {}
    init_names = {i.name for i in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in init_names]
    for vi, value in zip(real_inputs, inputs, strict=False):
        arr = np.asarray(value)
        net.add_input(vi.name, arr.dtype if arr.dtype != object else
                      dtypes.from_onnx(vi.type.tensor_type.elem_type), arr.shape)
        feeds[vi.name] = arr
    for i, node in enumerate(graph.node):
        attrs = {a.name: attribute_value(a, node.name, node.op_type) for a in node.attribute}
        net.add_layer(node.op_type, list(node.input), attrs, name=node.name or f"n{i}",
                      outputs=list(node.output), domain=node.domain)
    values = dict(feeds)
    for t in net.constants:
        values[t.name] = t.weights.numpy()
    rt = RunContext()
    for layer in net.layers:
        outs = layer.op.run(layer, [None if t is None else values[t.name] for t in layer.inputs],
                            rt)
        for t, v in zip(layer.outputs, outs, strict=False):
            values[t.name] = v
    return [values[o.name] for o in graph.output]


def check_case(model: ModelProto, inputs: list, expected: list, rtol: float = 1e-3,
               atol: float = 1e-7) -> None:
    """Run one case and compare like onnx's backend test runner (raises AssertionError)."""
    got = run_model_on_ops(model, inputs)
    assert len(got) == len(expected), f"{len(got)} outputs, expected {len(expected)}"
    for g, e in zip(got, expected, strict=True):
        e = np.asarray(e)
        g = np.asarray(g)
        assert g.shape == e.shape, f"shape {g.shape}, expected {e.shape}"
        if e.dtype == object or e.dtype.kind in "biuUS":
            np.testing.assert_array_equal(g, e)
        else:
            assert g.dtype == e.dtype, f"dtype {g.dtype}, expected {e.dtype}"
            np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol,
                                       atol=atol)


if __name__ == "__main__":
    wanted = set(sys.argv[1:]) or None
    passed = failed = 0
    for name, model, ins, outs in node_cases(wanted):
        try:
            check_case(model, ins, outs)
            passed += 1
            print(f"PASS {name}")
        except Exception as exc:  # noqa: BLE001 - a dev report lists every failure
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    print(f"{passed} passed, {failed} failed")

"""Run the ONNX backend node test cases (generated in memory by onnx) straight on our ops.

A development and test helper that needs neither the importer nor the engine: each case's
graph is turned into a Network node by node, inferred, and run with the NumPy reference of
every op. ``python tests/node_harness.py Add Relu`` prints pass/fail per case.
"""

from __future__ import annotations

import copy
import functools
import sys
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from onnx import ModelProto, TensorProto, numpy_helper

from dist_rt import dtypes
from dist_rt.network import Network
from dist_rt.onnx.attributes import attribute_value
from dist_rt.ops import RunContext, is_supported


@functools.lru_cache(maxsize=1)
def all_cases() -> tuple:
    """onnx's node test cases, generated once per process (that takes 15-30 s)."""
    import onnx.backend.test.case.node as node_cases_mod

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(node_cases_mod.collect_testcases(None))


def node_cases(op_types: set[str] | None = None) -> Iterator[tuple[str, ModelProto, list, list]]:
    """Yield (name, model, inputs, expected outputs) of onnx's node test cases."""
    for case in all_cases():
        ops = {n.op_type for n in case.model.graph.node}
        if op_types is not None and not ops & op_types:
            continue
        for inputs, outputs in case.data_sets or []:
            # Cases with exotic dtypes (Cast to float8...) store data as TensorProtos.
            yield case.name, case.model, [_as_array(v) for v in inputs], \
                [_as_array(v) for v in outputs]


def case_params(op_types: set[str], keep: Callable[[str, set[str]], bool] | None = None,
                skip: dict[str, str] | None = None) -> Iterator:
    """``pytest.param(model, inputs, outputs)`` of the node cases whose every op is registered.

    Args:
        op_types: A case is considered when its graph uses one of these ops.
        keep: Also required of a case: ``keep(name, op types of its graph)``.
        skip: Case names to mark skipped, with the reason.

    Yields:
        One param per case; a repeated case name gets the id ``name_2``, ``name_3``...
    """
    skip = skip or {}
    seen: dict[str, int] = {}
    for name, model, inputs, outputs in node_cases(op_types):
        ops = {(n.domain, n.op_type) for n in model.graph.node}
        if not all(is_supported(op, domain) for domain, op in ops):
            continue
        if keep is not None and not keep(name, {op for _, op in ops}):
            continue
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name}_{seen[name]}"
        marks = [pytest.mark.skip(reason=skip[name])] if name in skip else []
        yield pytest.param(model, inputs, outputs, id=key, marks=marks)


def named_outputs(model: ModelProto) -> ModelProto:
    """A copy of ``model`` where every omitted ("") node output has a unique name."""
    model = copy.deepcopy(model)
    for i, node in enumerate(model.graph.node):
        for j, name in enumerate(node.output):
            if not name:
                node.output[j] = f"_unused_{i}_{j}"
    return model


def has_16bit_float(outputs: list) -> bool:
    """True when an expected output is fp16/bf16 (looser tolerances apply)."""
    return any(np.asarray(o).dtype.itemsize == 2 and np.asarray(o).dtype.kind in "fV"
               for o in outputs)


def _as_array(value):
    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else value


def run_model_on_ops(model: ModelProto, inputs: list, backend=None) -> list[np.ndarray]:
    """Build a Network from a small ModelProto (no subgraphs) and run it layer by layer.

    Args:
        model: The case's model.
        inputs: Its input arrays, in graph-input order.
        backend: A ``dist_rt.runtime.backends.Backend`` to run every layer through (its
            ``run_layer``, device arrays); None runs the ops' NumPy references.

    Returns:
        The outputs in graph-output order, as host arrays.
    """
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
    if backend is None:
        to_device = to_host = lambda a: a  # noqa: E731 - identity on the host
        rt = RunContext()

        def run_layer(layer, ins, rt):
            return layer.op.run(layer, ins, rt)
    else:
        to_device, to_host, run_layer = backend.to_device, backend.to_host, backend.run_layer
        rt = backend.make_run_context()
    values = {name: to_device(a) for name, a in feeds.items()}
    for t in net.constants:
        values[t.name] = to_device(t.weights.numpy())
    for layer in net.layers:
        outs = run_layer(layer, [None if t is None else values[t.name] for t in layer.inputs],
                         rt)
        for t, v in zip(layer.outputs, outs, strict=False):
            values[t.name] = v
    return [to_host(values[o.name]) for o in graph.output]


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

"""Subgraph ops (If, Loop, Scan, SequenceMap), sequences/optionals, string, ml and training
ops: the ONNX node cases through dist_rt.backend, plus export and plan-file round trips of
networks holding subgraphs."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper

import dist_rt.backend as backend
from dist_rt.builder import Builder, BuilderConfig
from dist_rt.engine import Engine
from dist_rt.errors import InputError, PlanFileError
from dist_rt.onnx.exporter import export_onnx
from dist_rt.onnx.importer import parse_onnx

_PATTERN = re.compile(
    r"^test_(if|if_seq|loop11|loop13_seq|scan9?_\w+|sequence_\w+|split_to_sequence_\w+|"
    r"optional_\w+|identity_(sequence|opt)|string_\w+|regex_\w+|ai_onnx_ml_(label_encoder|"
    r"array_feature|binarizer)\w*|adagrad\w*|adam\w*|momentum\w*|nesterov\w*)$")


def _cases() -> list:
    import onnx.backend.test.case.node as node_mod  # noqa: PLC0415 - heavy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted((c for c in node_mod.collect_testcases(None) if _PATTERN.match(c.name)),
                      key=lambda c: c.name)


def _assert_same(got, want) -> None:
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _assert_same(g, w)
    elif want is None:
        assert got is None
    elif want.dtype == object:
        np.testing.assert_array_equal(got, want)
    else:
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


CASES = _cases()


class TestNodeCases:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case):
        inputs, expected = case.data_sets[0]
        outputs = backend.prepare(case.model).run(inputs)
        for got, want in zip(outputs, expected, strict=True):
            _assert_same(got, want)

    def test_the_node_cases_are_found(self):
        assert len(CASES) >= 60


def _loop_model():
    """y = x + sum_{i<n} i (an outer tensor 'x' read inside the body), scan of partials."""
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["i_f"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["acc", "i_f"], ["acc_out"]),
         helper.make_node("Add", ["acc_out", "x"], ["scan_out"]),
         helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "", "acc0"], ["acc", "partials"], body=body)], "g",
        [helper.make_tensor_value_info("n", TensorProto.INT64, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("acc0", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("acc", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("partials", TensorProto.FLOAT, [None, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class TestSubgraphIR:
    feeds = {"n": np.array(4, np.int64), "x": np.array([10, 20], np.float32),
             "acc0": np.zeros(2, np.float32)}

    def _check(self, acc, partials):
        np.testing.assert_allclose(acc, [6, 6])
        np.testing.assert_allclose(partials[:, 0], [10, 11, 13, 16])

    def test_outer_tensor_is_an_implicit_input(self):
        net = parse_onnx(_loop_model())
        loop = next(lay for lay in net.layers if lay.op_type == "Loop")
        assert loop.inputs[-1].name == "x"
        assert loop.attributes["body"].metadata["outer_inputs"] == ["x"]

    def test_export_round_trip(self):
        model = export_onnx(parse_onnx(_loop_model()))
        self._check(*backend.prepare(model).run(self.feeds))

    def test_plan_file_round_trip(self, tmp_path):
        engine = Builder(BuilderConfig()).build(parse_onnx(_loop_model()))
        engine.save(tmp_path / "loop.plan")
        loaded = Engine.load(tmp_path / "loop.plan")
        with loaded.create_execution_context() as ctx:
            out = ctx.execute(self.feeds)
        self._check(out["acc"], out["partials"])

    def test_plan_file_bad_outer_input_is_refused(self):
        from dist_rt import planfile  # noqa: PLC0415

        net = parse_onnx(_loop_model())
        body = next(lay for lay in net.layers if lay.op_type == "Loop").attributes["body"]
        record = planfile.encode_value(body, "body")
        record["__network__"]["outer_inputs"] = ["nope"]
        with pytest.raises(PlanFileError, match="outer input 'nope'"):
            planfile.decode_value(record, "body")


class TestSequenceBindings:
    def _model(self):
        graph = helper.make_graph(
            [helper.make_node("SequenceLength", ["s"], ["n"])], "g",
            [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    def test_list_feed(self):
        rep = backend.prepare(self._model())
        assert int(rep.run([[np.zeros(2, np.float32)] * 3])[0]) == 3

    def test_wrong_element_dtype_is_refused(self):
        rep = backend.prepare(self._model())
        with pytest.raises(InputError, match="element 0 has dtype int32"):
            rep.run([[np.zeros(2, np.int32)]])

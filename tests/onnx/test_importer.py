"""dist_rt.onnx.importer: parse_onnx against onnxruntime, folding, external data, errors."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import dist_rt
from dist_rt.backend import DistRtBackend
from dist_rt.errors import GraphError, ParseError, UnsupportedOpError
from dist_rt.onnx.importer import parse_onnx

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v)
                                                  for d, v in extra_opsets]
    # IR 10: what onnxruntime here reads (the helper's default may be newer).
    return helper.make_model(graph, opset_imports=imports, ir_version=10)


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _ours(model, feeds):
    rep = DistRtBackend.prepare(model, "CPU")
    return list(rep.run(feeds))


def _mlp(rng, din=7, dh=13, dout=5):
    w1 = rng.standard_normal((din, dh)).astype(np.float32)
    b1 = rng.standard_normal(dh).astype(np.float32)
    w2 = rng.standard_normal((dh, dout)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1.bias"),
             helper.make_node("Relu", ["h1"], ["h2"], name="act"),
             helper.make_node("MatMul", ["h2", "w2"], ["y"], name="fc2")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["batch", din])],
                  [helper.make_tensor_value_info("y", F, ["batch", dout])],
                  [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
                   numpy_helper.from_array(w2, "w2")])


class TestAgainstOnnxRuntime:
    @pytest.mark.parametrize("batch", [1, 3])
    def test_mlp(self, batch):
        rng = np.random.default_rng(batch)
        model = _mlp(rng)
        net = parse_onnx(model)
        assert [lay.op_type for lay in net.layers] == ["MatMul", "Add", "Relu", "MatMul"]
        assert net.inputs[0].shape == ("batch", 7)
        assert net.outputs[0].shape == ("batch", 5)
        x = rng.standard_normal((batch, 7)).astype(np.float32)
        np.testing.assert_allclose(_ours(model, {"x": x})[0], _ort(model, {"x": x})[0],
                                   rtol=1e-5, atol=1e-5)

    def test_small_conv_net(self):
        if not dist_rt.ops.is_supported("Conv"):
            pytest.skip("Conv is not registered yet")
        rng = np.random.default_rng(7)
        w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        fc = rng.standard_normal((4 * 5 * 6, 3)).astype(np.float32)
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["c"], ["r"], name="relu"),
                 helper.make_node("Flatten", ["r"], ["f"], name="flat"),
                 helper.make_node("MatMul", ["f", "fc"], ["y"], name="head")]
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 3, 5, 6])],
                       [helper.make_tensor_value_info("y", F, [2, 3])],
                       [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                        numpy_helper.from_array(fc, "fc")])
        x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
        np.testing.assert_allclose(_ours(model, {"x": x})[0], _ort(model, {"x": x})[0],
                                   rtol=1e-4, atol=1e-4)

    def test_unsorted_nodes_are_sorted(self):
        rng = np.random.default_rng(11)
        model = _mlp(rng)
        nodes = list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(reversed(nodes))
        net = parse_onnx(model)
        assert [lay.name for lay in net.layers] == ["fc1", "fc1.bias", "act", "fc2"]


class TestShapesAndFolding:
    def _shape_chain(self):
        # y = Reshape(x, concat(shape(x)[0], -1)): the target shape is shape arithmetic.
        nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
                 helper.make_node("Gather", ["s", "zero"], ["n"], name="take0", axis=0),
                 helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"], name="unsq"),
                 helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
                 helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
                 helper.make_node("Relu", ["x"], ["dead"], name="unused")]
        inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
                 numpy_helper.from_array(np.array([0], np.int64), "zero1"),
                 numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
        return nodes, inits

    def test_fold_and_prune(self):
        nodes, inits = self._shape_chain()
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [3, 4, 5])],
                       [helper.make_tensor_value_info("y", F, [None, None])], inits)
        net = parse_onnx(model)
        assert [lay.op_type for lay in net.layers] == ["Reshape"]
        np.testing.assert_array_equal(net.tensors["target"].weights.numpy(), [3, -1])
        assert net.outputs[0].shape == (3, 20)
        assert "dead" not in net.tensors
        kept = parse_onnx(model, fold_constants=False)
        assert len(kept.layers) == 6
        x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
        np.testing.assert_array_equal(_ours(model, {"x": x})[0], x.reshape(3, 20))

    def test_symbolic_and_missing_dims(self):
        nodes, inits = self._shape_chain()
        x = helper.make_tensor_value_info("x", F, ["batch", None, 5])
        model = _model(nodes, [x], [helper.make_tensor_value_info("y", F, [None, None])], inits)
        net = parse_onnx(model)
        assert net.inputs[0].shape == ("batch", None, 5)
        # Nothing is known about dim 0, so the shape chain stays.
        assert "Reshape" in [lay.op_type for lay in net.layers]
        assert len(net.layers) > 1
        data = np.random.default_rng(1).standard_normal((2, 3, 5)).astype(np.float32)
        np.testing.assert_array_equal(_ours(model, {"x": data})[0], data.reshape(2, 15))

    def test_constant_node_and_initializer_input(self):
        value = np.arange(6, dtype=np.float32).reshape(2, 3)
        nodes = [helper.make_node("Constant", [], ["c"], name="const",
                                  value=numpy_helper.from_array(value)),
                 helper.make_node("Add", ["x", "c"], ["s"], name="add"),
                 helper.make_node("Mul", ["s", "k"], ["y"], name="mul")]
        k = numpy_helper.from_array(np.float32(2.0).reshape(()), "k")
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 3]),
                               helper.make_tensor_value_info("k", F, [])],
                       [helper.make_tensor_value_info("y", F, [2, 3])], [k])
        net = parse_onnx(model)
        assert [t.name for t in net.inputs] == ["x"]
        assert net.tensors["c"].is_constant and net.tensors["k"].is_constant
        assert net.metadata["overridable_inputs"] == ["k"]
        x = np.ones((2, 3), np.float32)
        np.testing.assert_allclose(_ours(model, {"x": x})[0], (x + value) * 2)

    def test_old_opset_is_converted(self):
        nodes = [helper.make_node("Unsqueeze", ["x"], ["y"], name="unsq", axes=[0])]
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [3])],
                       [helper.make_tensor_value_info("y", F, [1, 3])], opset=11)
        net = parse_onnx(model, fold_constants=False)
        assert net.opset >= 13
        x = np.arange(3, dtype=np.float32)
        np.testing.assert_array_equal(_ours(model, {"x": x})[0], x[None])

    @pytest.mark.parametrize("cond", [True, False])
    def test_if_with_constant_condition_is_inlined(self, cond):
        def branch(op, name):
            return helper.make_graph([helper.make_node(op, ["x"], ["out"], name=name)], name,
                                     [], [helper.make_tensor_value_info("out", F, [4])])
        nodes = [helper.make_node("If", ["c"], ["y"], name="if",
                                  then_branch=branch("Relu", "then"),
                                  else_branch=branch("Neg", "else"))]
        c = numpy_helper.from_array(np.array(cond), "c")
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [4])],
                       [helper.make_tensor_value_info("y", F, [4])], [c])
        net = parse_onnx(model)
        assert "If" not in [lay.op_type for lay in net.layers]
        x = np.array([-1, 2, -3, 4], np.float32)
        np.testing.assert_array_equal(_ours(model, {"x": x})[0], _ort(model, {"x": x})[0])

    def test_if_with_runtime_condition_keeps_a_subgraph_layer(self):
        def branch(op, name):
            return helper.make_graph([helper.make_node(op, ["x"], ["out"])], name, [],
                                     [helper.make_tensor_value_info("out", F, [4])])
        nodes = [helper.make_node("If", ["c"], ["y"], name="branchy",
                                  then_branch=branch("Relu", "then"),
                                  else_branch=branch("Neg", "else"))]
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [4]),
                               helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                       [helper.make_tensor_value_info("y", F, [4])])
        net = parse_onnx(model)
        layer = net.layer("branchy")
        # The branches read the outer 'x': an implicit input after the condition.
        assert [t.name for t in layer.inputs] == ["c", "x"]
        x = np.array([-1, 2, -3, 4], np.float32)
        for cond in (True, False):
            feeds = {"x": x, "c": np.array(cond)}
            np.testing.assert_array_equal(_ours(model, feeds)[0], _ort(model, feeds)[0])


class TestExternalData:
    def test_external_weights_are_mapped_and_read_by_slice(self, tmp_path):
        rng = np.random.default_rng(5)
        model = _mlp(rng, din=33, dh=65, dout=9)
        path = os.path.join(tmp_path, "mlp.onnx")
        saved = onnx.ModelProto()
        saved.CopyFrom(model)  # save_model moves the data of the proto it is given
        onnx.save_model(saved, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="mlp.bin", size_threshold=0)
        net = dist_rt.parse_onnx(path)
        w1 = net.tensors["w1"].weights
        assert w1.is_mapped
        expected = numpy_helper.to_array(model.graph.initializer[0])
        np.testing.assert_array_equal(w1.read((slice(None), slice(10, 20))),
                                      expected[:, 10:20])
        x = rng.standard_normal((2, 33)).astype(np.float32)
        rep = DistRtBackend.prepare(path)
        np.testing.assert_allclose(rep.run({"x": x})[0], _ort(model, {"x": x})[0],
                                   rtol=1e-4, atol=1e-4)

    def test_missing_external_file(self, tmp_path):
        model = _mlp(np.random.default_rng(0))
        path = os.path.join(tmp_path, "m.onnx")
        onnx.save_model(model, path, save_as_external_data=True, location="w.bin",
                        size_threshold=0)
        os.remove(os.path.join(tmp_path, "w.bin"))
        with pytest.raises(ParseError, match="initializer 'w1'"):
            parse_onnx(path)

    def test_location_outside_model_dir_is_rejected(self, tmp_path):
        model = _mlp(np.random.default_rng(0))
        init = model.graph.initializer[0]
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = TensorProto.EXTERNAL
        entry = init.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"
        with pytest.raises(ParseError, match="relative path inside"):
            parse_onnx(model, base_dir=str(tmp_path))


class TestCustomDomains:
    @pytest.mark.parametrize("spelling", ["kALL_REDUCE", "AllReduce", "all_reduce"])
    def test_dist_collective_from_foreign_domain(self, spelling):
        node = helper.make_node("DistCollective", ["x"], ["y"], name="ar", domain="trt",
                                collective_operation=spelling, reduce_op="kSUM", root=0,
                                group_size=4)
        model = _model([node], [helper.make_tensor_value_info("x", F, [8, 2])],
                       [helper.make_tensor_value_info("y", F, [8, 2])],
                       extra_opsets=[("trt", 1)])
        net = parse_onnx(model)
        layer = net.layers[0]
        assert (layer.op_type, layer.domain, layer.nb_ranks) == ("DistCollective", "", 4)
        assert layer.attributes["collective_operation"] == "all_reduce"
        assert layer.attributes["reduce_op"] == "sum"
        assert net.outputs[0].shape == (8, 2)

    def test_all_gather_group_sets_ranks_and_shape(self):
        node = helper.make_node("DistCollective", ["x"], ["y"], name="ag", domain="dist_rt",
                                collective_operation="all_gather", group=[0, 1, 2], axis=1)
        model = _model([node], [helper.make_tensor_value_info("x", F, [2, 5])],
                       [helper.make_tensor_value_info("y", F, [2, 15])],
                       extra_opsets=[("dist_rt", 1)])
        layer = parse_onnx(model).layers[0]
        assert layer.nb_ranks == 3 and layer.outputs[0].shape == (2, 15)

    def test_dist_rt_domain_op_keeps_domain(self):
        if not dist_rt.ops.is_supported("Attention", "dist_rt"):
            pytest.skip("dist_rt::Attention is not registered yet")
        q = helper.make_tensor_value_info("q", F, [1, 2, 4, 8])
        node = helper.make_node("Attention", ["q", "q", "q"], ["y"], name="attn",
                                domain="dist_rt")
        model = _model([node], [q], [helper.make_tensor_value_info("y", F, [1, 2, 4, 8])],
                       extra_opsets=[("dist_rt", 1)])
        assert parse_onnx(model).layers[0].domain == "dist_rt"


class TestErrors:
    def test_malformed_bytes(self):
        with pytest.raises(ParseError, match="not a valid ONNX model"):
            parse_onnx(b"\x08\xff\xff\xff this is not protobuf")

    def test_missing_file(self, tmp_path):
        with pytest.raises(ParseError, match="does not exist"):
            parse_onnx(os.path.join(tmp_path, "nope.onnx"))

    def test_garbage_file(self, tmp_path):
        path = os.path.join(tmp_path, "bad.onnx")
        with open(path, "wb") as f:
            f.write(os.urandom(64))
        with pytest.raises(ParseError, match="bad.onnx"):
            parse_onnx(path)

    def test_unknown_op(self):
        node = helper.make_node("FrobnicateX", ["x"], ["y"], name="frob")
        model = _model([node], [helper.make_tensor_value_info("x", F, [2])],
                       [helper.make_tensor_value_info("y", F, [2])])
        # onnx.checker rejects unknown ops of the default domain first; the importer's own
        # message applies to other domains.
        with pytest.raises((ParseError, UnsupportedOpError), match="FrobnicateX"):
            parse_onnx(model)
        node.domain = "acme"
        model = _model([node], [helper.make_tensor_value_info("x", F, [2])],
                       [helper.make_tensor_value_info("y", F, [2])], extra_opsets=[("acme", 3)])
        with pytest.raises(UnsupportedOpError) as info:
            parse_onnx(model)
        text = str(info.value)
        for part in ("'frob'", "FrobnicateX", "acme", "opset 3", "supported ops"):
            assert part in text

    def test_dangling_input(self):
        nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
                 helper.make_node("Add", ["a", "ghost"], ["y"], name="adder")]
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [2])],
                       [helper.make_tensor_value_info("y", F, [2])])
        with pytest.raises(GraphError, match="'adder'.*'ghost'"):
            parse_onnx(model)

    def test_duplicate_output(self):
        nodes = [helper.make_node("Relu", ["x"], ["y"], name="first"),
                 helper.make_node("Neg", ["x"], ["y"], name="second")]
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [2])],
                       [helper.make_tensor_value_info("y", F, [2])])
        with pytest.raises(GraphError, match="'y'.*'first'.*'second'"):
            parse_onnx(model)

    def test_cycle(self):
        nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                 helper.make_node("Relu", ["a"], ["b"], name="n2"),
                 helper.make_node("Neg", ["a"], ["y"], name="n3")]
        model = _model(nodes, [helper.make_tensor_value_info("x", F, [2])],
                       [helper.make_tensor_value_info("y", F, [2])])
        with pytest.raises(GraphError, match="cycle through node 'n[12]'"):
            parse_onnx(model)

    def test_wrong_type(self):
        with pytest.raises(ParseError, match="got int"):
            parse_onnx(42)

    def test_checker_failure_is_one_line(self):
        model = _mlp(np.random.default_rng(0))
        model.ir_version = 0
        with pytest.raises(ParseError) as info:
            parse_onnx(model)
        assert "\n" not in str(info.value)

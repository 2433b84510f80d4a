"""dist_rt.onnx.exporter: export_onnx round trips, onnxruntime agreement, external data."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import dist_rt
from dist_rt import dtypes
from dist_rt.errors import ModelError
from dist_rt.network import Network
from dist_rt.onnx.exporter import export_onnx, save_onnx
from dist_rt.onnx.importer import parse_onnx


def _mlp(rng, din=6, dh=10, dout=3, dtype=np.float32) -> Network:
    net = Network("mlp", opset=17)
    x = net.add_input("x", dtype, ("batch", din))
    w1 = net.add_constant("w1", rng.standard_normal((din, dh)).astype(dtype))
    b1 = net.add_constant("b1", rng.standard_normal(dh).astype(dtype))
    w2 = net.add_constant("w2", rng.standard_normal((dh, dout)).astype(dtype))
    h = net.add_activation(net.add_elementwise(net.add_matmul(x, w1), b1, "Add"), "Relu")
    net.mark_output(net.add_matmul(h, w2))
    return net


def _interpret(net, feeds):
    """The reference: an engine without graph rewriting (level 0) on the CPU."""
    engine = dist_rt.Builder(dist_rt.BuilderConfig(optimization_level=0)).build(net)
    with engine.create_execution_context() as ctx:
        return ctx.execute(feeds)


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


class TestRoundTrip:
    @pytest.mark.parametrize("batch", [1, 5])
    def test_mlp_matches_onnxruntime_and_reimports(self, batch):
        rng = np.random.default_rng(batch)
        net = _mlp(rng)
        model = export_onnx(net)
        onnx.checker.check_model(model)
        x = rng.standard_normal((batch, 6)).astype(np.float32)
        out_name = net.outputs[0].name
        expected = _interpret(net, {"x": x})[out_name]
        np.testing.assert_allclose(_ort(model, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)
        back = parse_onnx(model)
        assert [(lay.name, lay.op_type) for lay in back.layers] == \
            [(lay.name, lay.op_type) for lay in net.layers]
        assert back.inputs[0].shape == ("batch", 6)
        assert back.outputs[0].name == out_name
        np.testing.assert_allclose(_interpret(back, {"x": x})[out_name], expected, rtol=1e-6)

    def test_attributes_and_metadata_survive(self):
        net = Network("t", opset=17)
        x = net.add_input("x", np.float32, (2, 3, 4))
        y = net.add_transpose(x, [2, 0, 1])
        net.mark_output(net.add_softmax(y, axis=1) if dist_rt.ops.is_supported("Softmax")
                        else y)
        net.metadata.update({"rank": 1, "world_size": 4, "plan_hash": "abc123"})
        back = parse_onnx(export_onnx(net))
        assert back.layers[0].attributes["perm"] == [2, 0, 1]
        assert (back.metadata["rank"], back.metadata["world_size"],
                back.metadata["plan_hash"]) == (1, 4, "abc123")

    def test_bfloat16_weights(self):
        rng = np.random.default_rng(3)
        net = _mlp(rng, dtype=dtypes.bfloat16)
        back = parse_onnx(export_onnx(net))
        assert back.tensors["w1"].dtype == dtypes.bfloat16
        np.testing.assert_array_equal(back.tensors["w1"].weights.numpy(),
                                      net.tensors["w1"].weights.numpy())

    def test_untyped_tensor_is_an_error(self):
        net = Network("t")
        x = net.add_input("x", np.float32, (2,))
        y = net.add_layer("Relu", [x], infer=False).outputs[0]
        net.mark_output(y)
        with pytest.raises(ModelError, match="tensor '.*' has no dtype"):
            export_onnx(net)


class TestDistCollective:
    def test_exported_in_dist_rt_domain_and_reimported(self):
        net = Network("tp", opset=17)
        x = net.add_input("x", np.float32, (4, 6))
        w = net.add_constant("w", np.ones((6, 8), np.float32))
        partial = net.add_matmul(x, w)
        y = net.add_collective(partial, "all_reduce", nb_ranks=4)
        z = net.add_collective(y, "all_gather", axis=1, group=[0, 1])
        net.mark_output(z)
        model = export_onnx(net)
        onnx.checker.check_model(model)
        nodes = [n for n in model.graph.node if n.op_type == "DistCollective"]
        assert {n.domain for n in nodes} == {"dist_rt"}
        assert {(o.domain, o.version) for o in model.opset_import} >= {("dist_rt", 1)}
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
        assert attrs["collective_operation"] == b"all_reduce"
        assert attrs["group_size"] == 4 and attrs["root"] == 0 and attrs["axis"] == 0
        back = parse_onnx(model)
        ar, ag = [lay for lay in back.layers if lay.op_type == "DistCollective"]
        assert (ar.nb_ranks, ar.domain) == (4, "")
        assert (ag.nb_ranks, ag.attributes["group"], ag.outputs[0].shape) == (2, [0, 1], (4, 16))

    def test_nb_ranks_of_other_layers_survive(self):
        net = _mlp(np.random.default_rng(0))
        net.layers[0].nb_ranks = 2
        back = parse_onnx(export_onnx(net))
        assert back.layers[0].nb_ranks == 2
        onnx.checker.check_model(export_onnx(net))


class TestExternalData:
    def test_weights_go_to_one_aligned_file_and_map_back(self, tmp_path):
        rng = np.random.default_rng(9)
        net = _mlp(rng, din=40, dh=70, dout=5)
        data = os.path.join(tmp_path, "weights.bin")
        model = export_onnx(net, external_data_path=data)
        external = [t for t in model.graph.initializer
                    if t.data_location == onnx.TensorProto.EXTERNAL]
        assert {t.name for t in external} == {"w1", "w2"}      # b1 (280 B) stays inline
        for t in external:
            offset = int({e.key: e.value for e in t.external_data}["offset"])
            assert offset % 4096 == 0
        path = os.path.join(tmp_path, "model.onnx")
        onnx.save(model, path)
        back = dist_rt.parse_onnx(path)
        w1 = back.tensors["w1"].weights
        assert w1.is_mapped
        np.testing.assert_array_equal(w1.read((slice(None), slice(35, 70))),
                                      net.tensors["w1"].weights.numpy()[:, 35:70])
        x = rng.standard_normal((3, 40)).astype(np.float32)
        name = net.outputs[0].name
        np.testing.assert_allclose(_interpret(back, {"x": x})[name],
                                   _interpret(net, {"x": x})[name], rtol=1e-6)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"x": x})[0],
                                   _interpret(net, {"x": x})[name], rtol=1e-5, atol=1e-5)

    def test_save_onnx_with_mapped_weights(self, tmp_path):
        # A network whose weights are themselves memory-mapped re-exports them.
        net = _mlp(np.random.default_rng(4), din=64, dh=64)
        first = os.path.join(tmp_path, "a.onnx")
        save_onnx(net, first, external_data=True)
        mapped = parse_onnx(first)
        second_dir = os.path.join(tmp_path, "b")
        os.makedirs(second_dir)
        second = os.path.join(second_dir, "b.onnx")
        save_onnx(mapped, second, external_data=True)
        again = parse_onnx(second)
        np.testing.assert_array_equal(again.tensors["w1"].weights.numpy(),
                                      net.tensors["w1"].weights.numpy())

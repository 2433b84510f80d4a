"""Builder end to end: the input network is untouched, results match NumPy at every level."""

from __future__ import annotations

import numpy as np
import pytest
from _builder_nets import mlp, mlp_reference, run

from dist_rt import Builder, BuilderConfig
from dist_rt.builder.verify import verify
from dist_rt.errors import BuildError, DeviceError


class TestBuilder:
    @pytest.mark.parametrize("level", [0, 1, 2, 3])
    @pytest.mark.parametrize("batch", [1, 5])
    def test_levels_match_numpy(self, level, batch):
        rng = np.random.default_rng(level * 10 + batch)
        net, w = mlp(rng)
        x = rng.standard_normal((batch, 7)).astype(np.float32)
        out = run(net, {"x": x}, optimization_level=level)
        np.testing.assert_allclose(out[net.outputs[0].name], mlp_reference(x, w), rtol=1e-5,
                                   atol=1e-5)

    def test_input_network_not_modified(self):
        net, _ = mlp(np.random.default_rng(0))
        before = str(net)
        engine = Builder(BuilderConfig(verify=True)).build(net)
        assert str(net) == before and engine.network is not net

    def test_progress_lists_passes(self):
        lines = []
        net, _ = mlp(np.random.default_rng(0))
        Builder(BuilderConfig(), progress=lines.append).build(net)
        text = "\n".join(lines)
        for name in ("fold_constants", "eliminate", "precision", "memory_plan"):
            assert name in text

    def test_metadata_rank_world_hash(self):
        net, _ = mlp(np.random.default_rng(0))
        net.metadata.update(rank=1, world_size=3, plan_hash="abc123")
        engine = Builder().build(net)
        assert (engine.rank, engine.world_size, engine.plan_hash) == (1, 3, "abc123")

    def test_plan_hash_depends_on_weights(self):
        a, _ = mlp(np.random.default_rng(0))
        b, _ = mlp(np.random.default_rng(1))
        assert Builder().build(a).plan_hash != Builder().build(b).plan_hash
        assert Builder().build(a).plan_hash == Builder().build(a.copy()).plan_hash

    def test_memory_limit(self):
        net, _ = mlp(np.random.default_rng(0))
        with pytest.raises(BuildError, match="memory_limit"):
            Builder(BuilderConfig(memory_limit=16)).build(net, input_shapes={"x": (64, 7)})

    def test_profile_names_unknown_input(self):
        net, _ = mlp(np.random.default_rng(0))
        cfg = BuilderConfig()
        cfg.add_profile("p", min={"nope": (1, 7)}, opt={"nope": (1, 7)}, max={"nope": (2, 7)})
        with pytest.raises(BuildError, match="'nope' is not a network input"):
            Builder(cfg).build(net)

    def test_cuda_without_cupy_is_device_error(self):
        pytest.importorskip("numpy")
        try:
            import cupy  # noqa: F401
            pytest.skip("CuPy present")
        except ImportError:
            pass
        net, _ = mlp(np.random.default_rng(0))
        with pytest.raises(DeviceError, match="cuda"):
            Builder(BuilderConfig(device="cuda")).build(net)
        assert Builder(BuilderConfig(device="auto")).build(net).device == "cpu"

    def test_verify_catches_broken_ir(self):
        net, _ = mlp(np.random.default_rng(0))
        net.layers[0].outputs[0].dtype = np.dtype(np.float16)
        with pytest.raises(BuildError, match="after pass 'test'.*float16"):
            verify(net, "test")


def _exporter_style_model(rng):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape around an MLP, as torch exports."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(rng.standard_normal((6, 11)).astype(np.float32), "W"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.array([0], np.int64), "axes")]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Unsqueeze", ["b", "axes"], ["b1"]),
             helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("Identity", ["flat"], ["flat2"]),
             helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(
        nodes, "exp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 11]),
         helper.make_tensor_value_info("flat2", TensorProto.FLOAT, ["batch", 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_onnx_model_matches_onnxruntime(level):
    ort = pytest.importorskip("onnxruntime")
    import dist_rt
    rng = np.random.default_rng(level)
    model = _exporter_style_model(rng)
    try:
        net = dist_rt.parse_onnx(model, fold_constants=False)
    except dist_rt.errors.UnsupportedOpError as exc:
        pytest.skip(str(exc)[:100])
    x = rng.standard_normal((3, 6)).astype(np.float32)
    out = run(net, {"x": x}, optimization_level=level)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, ref in zip(["y", "flat2"], sess.run(["y", "flat2"], {"x": x}), strict=True):
        np.testing.assert_allclose(out[name], ref, rtol=1e-5, atol=1e-5)

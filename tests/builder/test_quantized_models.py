"""QuantizeLinear/DequantizeLinear (QDQ) models parse, build and match onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _builder_nets import ort_quantized_mlp
from onnx import TensorProto, helper, numpy_helper

import dist_rt
from dist_rt import Builder, BuilderConfig


def _qdq_mlp(rng, per_channel: bool) -> onnx.ModelProto:
    """x -> Q/DQ -> MatMul(DQ(W int8)) + b -> Relu -> Q/DQ -> MatMul(DQ(W2)): the QDQ format
    of onnxruntime.quantization (uint8 activations, int8 symmetric weights)."""
    w1 = rng.integers(-127, 128, (8, 16)).astype(np.int8)
    w2 = rng.integers(-127, 128, (16, 4)).astype(np.int8)
    s1 = (rng.random(16) * 0.01 + 0.005).astype(np.float32) if per_channel \
        else np.float32(0.01)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w1, "w1_q"), (np.asarray(s1), "w1_s"), (np.zeros_like(s1, np.int8), "w1_zp"),
        (w2, "w2_q"), (np.float32(0.02), "w2_s"), (np.int8(0), "w2_zp"),
        (rng.standard_normal(16).astype(np.float32), "b1"),
        (np.float32(0.05), "a_s"), (np.uint8(128), "a_zp"),
        (np.float32(0.1), "h_s"), (np.uint8(0), "h_zp")]]
    axis = {"axis": 1} if per_channel else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "a_s", "a_zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "a_s", "a_zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w1_q", "w1_s", "w1_zp"], ["w1"], **axis),
             helper.make_node("MatMul", ["xd", "w1"], ["h0"]),
             helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]),
             helper.make_node("QuantizeLinear", ["h2", "h_s", "h_zp"], ["hq"]),
             helper.make_node("DequantizeLinear", ["hq", "h_s", "h_zp"], ["hd"]),
             helper.make_node("DequantizeLinear", ["w2_q", "w2_s", "w2_zp"], ["w2"]),
             helper.make_node("MatMul", ["hd", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes, "qdq_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _check(model: onnx.ModelProto, x: np.ndarray, level: int) -> None:
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    engine = Builder(BuilderConfig(verify=True, optimization_level=level)).build(
        dist_rt.parse_onnx(model))
    with engine.create_execution_context() as ctx:
        got = next(iter(ctx.execute({"x": x}).values()))
    # Rounding at a quantization boundary may differ by one step of the last Q (0.1 * |w2|).
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("per_channel", [False, True])
def test_handwritten_qdq_mlp(per_channel, level):
    rng = np.random.default_rng(0)
    _check(_qdq_mlp(rng, per_channel), rng.standard_normal((5, 8)).astype(np.float32), level)


def test_quantize_static_mlp(tmp_path):
    model, samples = ort_quantized_mlp(tmp_path, np.random.default_rng(1), 8, 16, 4)
    assert any(n.op_type == "DequantizeLinear" for n in model.graph.node)
    _check(model, samples[0]["x"], 2)

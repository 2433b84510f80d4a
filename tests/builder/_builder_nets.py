"""Small networks for the builder tests, built through the Network API, with NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig
from dist_rt.models.llama import LlamaConfig, make_llama
from dist_rt.network import Network
from dist_rt.ops import is_supported

#: ``(layers, heads, kv_heads, dynamic shapes)`` of the small Llamas the fusion tests build,
#: and their test ids.
LLAMA_PARAMS = [(2, 8, 4, False), (3, 4, 4, True)]
LLAMA_IDS = ["gqa", "mha-dynamic"]


def needs(*ops: str):
    """Skip a test until the listed ops are registered (other helpers write them)."""
    missing = [o for o in ops if not is_supported(o)]
    return pytest.mark.skipif(bool(missing), reason=f"ops not registered yet: {missing}")


def mlp(rng: np.random.Generator, d_in: int = 7, d_hidden: int = 13, d_out: int = 5):
    """x(batch, d_in) @ W1 + b1 -> Relu -> @ W2; returns (network, weights dict)."""
    net = Network("mlp")
    x = net.add_input("x", np.float32, ("batch", d_in))
    w1 = rng.standard_normal((d_in, d_hidden)).astype(np.float32)
    b1 = rng.standard_normal(d_hidden).astype(np.float32)
    w2 = rng.standard_normal((d_hidden, d_out)).astype(np.float32)
    h = net.add_matmul(x, net.add_constant("w1", w1))
    if is_supported("Add"):
        h = net.add_elementwise(h, net.add_constant("b1", b1), "Add")
    else:
        b1 = np.zeros_like(b1)
    y = net.add_matmul(net.add_activation(h, "Relu"), net.add_constant("w2", w2))
    net.mark_output(y)
    return net, {"w1": w1, "b1": b1, "w2": w2}


def mlp_reference(x: np.ndarray, w: dict) -> np.ndarray:
    """NumPy reference of :func:`mlp`."""
    return np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"]


def run(network: Network, feeds: dict, **config) -> dict:
    """Build with ``verify=True`` and execute once."""
    engine = Builder(BuilderConfig(verify=True, **config)).build(network)
    with engine.create_execution_context() as ctx:
        return ctx.execute(feeds)


def llama_net(layers: int, heads: int, kv_heads: int, dynamic: bool):
    """A small ``make_llama`` model parsed into a Network; returns (config, network)."""
    cfg = LlamaConfig(layers=layers, heads=heads, kv_heads=kv_heads, hidden=64, mlp=96,
                      vocab=50, max_seq=32)
    return cfg, dist_rt.parse_onnx(make_llama(cfg, dynamic_shapes=dynamic))


def logits(engine, feeds: dict) -> np.ndarray:
    """Execute ``engine`` once on ``feeds``; its ``logits`` output."""
    with engine.create_execution_context() as ctx:
        return ctx.execute(feeds)["logits"]


def ort_quantized_mlp(tmp_path, rng: np.random.Generator, d_in: int, d_hidden: int, d_out: int,
                      *, gemm_last: bool = False, **options):
    """``x @ W1 + b1 -> Relu -> @ W2`` (``Gemm(transB=1)`` when ``gemm_last``), batch 4,
    through ``onnxruntime.quantization.quantize_static`` in QDQ format.

    Args:
        tmp_path: Folder for the float and quantized ONNX files.
        rng: Draws W1, b1, W2, then four calibration batches.
        d_in, d_hidden, d_out: Layer widths.
        gemm_last: Write the last layer as Gemm with a transposed (d_out, d_hidden) weight.
        options: More ``quantize_static`` keywords (per_channel, weight_type...).

    Returns:
        (quantized model, calibration feeds).
    """
    import onnx  # noqa: PLC0415 - only the quantization tests need these
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    quantization = pytest.importorskip("onnxruntime.quantization")
    w2_shape = (d_out, d_hidden) if gemm_last else (d_hidden, d_out)
    inits = [numpy_helper.from_array(rng.standard_normal((d_in, d_hidden)).astype(np.float32),
                                     "w1"),
             numpy_helper.from_array(rng.standard_normal(d_hidden).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal(w2_shape).astype(np.float32), "w2")]
    last = (helper.make_node("Gemm", ["h2", "w2"], ["y"], transB=1) if gemm_last
            else helper.make_node("MatMul", ["h2", "w2"], ["y"]))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]),
             helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), last]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, d_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, d_out])], inits)
    src, dst = tmp_path / "mlp.onnx", tmp_path / "mlp.qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), src)
    samples = [{"x": rng.standard_normal((4, d_in)).astype(np.float32)} for _ in range(4)]

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)

    quantization.quantize_static(str(src), str(dst), Reader(),
                                 quant_format=quantization.QuantFormat.QDQ, **options)
    return onnx.load(dst), samples

"""CUDA weight-only int8 GEMMs (runtime/cuda/w8.py): kernels vs NumPy, capture, engines.

Tolerances: M <= w8.GEMV_MAX_ROWS (the GEMV kernel) accumulates in float32 and rounds the
output once, so fp16/bf16 results are within one output rounding of the float64 reference.
Larger M rounds
the dequantized weight to A's dtype before cuBLAS, like the unfused DequantizeLinear ->
MatMul: a relative error of a few 16-bit ulps in norm.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dist_rt
from dist_rt import Builder, BuilderConfig, dtypes

pytestmark = pytest.mark.gpu

#: Max |error| / (1 + |ref|) per activation dtype for the GEMV path.
TOL = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 1.6e-2}


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def w8(cp):
    from dist_rt.runtime.cuda import w8

    return w8


def _dtype(name):
    return dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def _operands(rng, m, k, n, adt, wdt, per_channel, with_zp):
    info = np.iinfo(wdt)
    a = rng.standard_normal((m, k)).astype(np.float32).astype(_dtype(adt))
    wq = rng.integers(info.min, info.max + 1, (k, n)).astype(wdt)
    shape = (n,) if per_channel else ()
    scale = (rng.random(shape) * 0.02 / np.sqrt(k) + 1e-4).astype(np.float32)
    zp = rng.integers(info.min, info.max + 1, shape).astype(wdt) if with_zp else None
    return a, wq, scale, zp


def _reference(a, wq, scale, zp):
    w = wq.astype(np.float64)
    if zp is not None:
        w = w - zp.astype(np.float64).reshape(-1)
    return a.astype(np.float64) @ (w * scale.astype(np.float64).reshape(-1))


def _check(y, ref, adt, m):
    y = np.asarray(y).astype(np.float64)
    assert y.shape == ref.shape
    if m <= 4:  # w8.GEMV_MAX_ROWS
        assert np.max(np.abs(y - ref) / (1 + np.abs(ref))) <= TOL[adt]
    else:
        assert np.linalg.norm(y - ref) / np.linalg.norm(ref) <= TOL[adt] * 2


@pytest.mark.parametrize("adt", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("k, n", [(1000, 1027), (2048, 5632), (64, 4)])
@pytest.mark.parametrize("m", [1, 3, 16, 17, 64])
class TestKernel:
    def test_int8_per_channel(self, cp, w8, m, k, n, adt):
        rng = np.random.default_rng(m * 7 + k + n)
        a, wq, scale, zp = _operands(rng, m, k, n, adt, np.int8, True, False)
        y = w8.matmul(cp.asarray(a), cp.asarray(wq), cp.asarray(scale))
        assert y.dtype == a.dtype
        _check(cp.asnumpy(y), _reference(a, wq, scale, zp), adt, m)

    def test_uint8_per_tensor_zero_point(self, cp, w8, m, k, n, adt):
        rng = np.random.default_rng(m * 11 + k + n)
        a, wq, scale, zp = _operands(rng, m, k, n, adt, np.uint8, False, True)
        y = w8.matmul(cp.asarray(a), cp.asarray(wq), cp.asarray(scale), cp.asarray(zp))
        _check(cp.asnumpy(y), _reference(a, wq, scale, zp), adt, m)


class TestOperands:
    def test_batch_dims_and_strided_rows(self, cp, w8):
        rng = np.random.default_rng(1)
        a, wq, scale, zp = _operands(rng, 12, 520, 264, "float16", np.int8, True, True)
        ref = _reference(a, wq, scale, zp)
        args = (cp.asarray(wq), cp.asarray(scale), cp.asarray(zp))
        y = w8.matmul(cp.asarray(a).reshape(2, 2, 3, 520), *args)
        assert y.shape == (2, 2, 3, 264)
        _check(cp.asnumpy(y).reshape(12, 264), ref, "float16", 12)
        wide = cp.zeros((12, 600), dtype=cp.float16)
        wide[:, 40:560] = cp.asarray(a)
        _check(cp.asnumpy(w8.matmul(wide[:, 40:560], *args)), ref, "float16", 12)

    def test_fp16_scale_and_empty(self, cp, w8):
        rng = np.random.default_rng(2)
        a, wq, scale, _ = _operands(rng, 2, 300, 40, "float32", np.int8, True, False)
        y = w8.matmul(cp.asarray(a), cp.asarray(wq), cp.asarray(scale.astype(np.float16)))
        _check(cp.asnumpy(y), _reference(a, wq, scale.astype(np.float16), None), "float32", 2)
        empty = w8.matmul(cp.zeros((0, 300), cp.float16), cp.asarray(wq), cp.asarray(scale))
        assert empty.shape == (0, 40)
        zero_k = w8.matmul(cp.ones((2, 0), cp.float16), cp.zeros((0, 40), cp.int8),
                           cp.asarray(scale))
        assert cp.asnumpy(zero_k).tolist() == [[0.0] * 40] * 2

    @pytest.mark.parametrize("m", [1, 16, 40])
    def test_captured_in_a_cuda_graph(self, cp, w8, m):
        rng = np.random.default_rng(3)
        a, wq, scale, zp = _operands(rng, m, 2048, 5632, "float16", np.int8, True, True)
        a, wq, scale, zp = (cp.asarray(x) for x in (a, wq, scale, zp))
        stream = cp.cuda.Stream(non_blocking=True)
        pool = cp.cuda.MemoryPool()
        relaxed = getattr(cp.cuda.runtime, "streamCaptureModeRelaxed", 2)
        with cp.cuda.using_allocator(pool.malloc), stream:
            want = w8.matmul(a, wq, scale, zp)  # compiles, makes the cuBLAS handle
            stream.synchronize()
            stream.begin_capture(relaxed)
            y = w8.matmul(a, wq, scale, zp)
            graph = stream.end_capture()
            y.fill(0)
            graph.launch(stream)
            stream.synchronize()
        np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want))


def _qdq_model(rng) -> onnx.ModelProto:
    """x (batch, 512) -> MatMul(DQ(W1 int8 (512, 1024))) -> Relu -> Gemm(DQ(W2 (768, 1024)),
    transB=1) + b2: the two forms of onnxruntime.quantization's QDQ output."""
    w1 = rng.integers(-127, 128, (512, 1024)).astype(np.int8)
    w2 = rng.integers(-127, 128, (768, 1024)).astype(np.int8)
    inits = [numpy_helper.from_array(w1, "w1_q"),
             numpy_helper.from_array((rng.random(1024) * 2e-3).astype(np.float32), "w1_s"),
             numpy_helper.from_array(np.zeros(1024, np.int8), "w1_zp"),
             numpy_helper.from_array(w2, "w2_q"),
             numpy_helper.from_array((rng.random(768) * 2e-3).astype(np.float32), "w2_s"),
             numpy_helper.from_array(rng.standard_normal(768).astype(np.float32), "b2")]
    nodes = [helper.make_node("DequantizeLinear", ["w1_q", "w1_s", "w1_zp"], ["w1"], axis=1),
             helper.make_node("DequantizeLinear", ["w2_q", "w2_s"], ["w2"], axis=0),
             helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 768])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class TestEngine:
    @pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("fp16", 1e-2),
                                                ("bf16", 5e-2)])
    @pytest.mark.parametrize("batch", [1, 24])
    def test_qdq_mlp_matches_cpu(self, cp, precision, tol, batch):
        rng = np.random.default_rng(4)
        net = dist_rt.parse_onnx(_qdq_model(rng))
        x = {"x": rng.standard_normal((batch, 512)).astype(np.float32)}
        cpu = Builder(BuilderConfig(optimization_level=0)).build(net)
        gpu = Builder(BuilderConfig(device="cuda", precision=precision, verify=True)).build(net)
        woq = [lay for lay in gpu.network.layers if lay.op_type == "WeightOnlyMatMul"]
        assert len(woq) == 2
        assert all(lay.inputs[1].dtype == np.int8 and lay.inputs[2].dtype == np.float32
                   for lay in woq)
        with cpu.create_execution_context() as c0, gpu.create_execution_context() as c1:
            ref = c0.execute(x)["y"]
            for _ in range(3):  # eager warm-up, capture, replay
                got = c1.execute(x)["y"]
                assert np.max(np.abs(got - ref)) <= tol * (1 + np.max(np.abs(ref)))
            assert [e.fallback for e in c1._cuda_graph_runner.graphs.values()] == [None]

    def test_quantized_llama_decode(self, cp):
        from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
        from dist_rt.models.quantize import quantize_matmul_weights

        cfg = LlamaConfig(hidden=512, layers=2, heads=8, kv_heads=2, mlp=1024, vocab=500,
                          dtype="float16")
        model = quantize_matmul_weights(make_llama(cfg))
        net = dist_rt.parse_onnx(model)
        engine = Builder(BuilderConfig(device="cuda", precision="fp16")).build(net)
        assert sum(lay.op_type == "WeightOnlyMatMul" for lay in engine.network.layers) > 0
        ref = Builder(BuilderConfig(optimization_level=0)).build(net)
        for batch, seq in [(1, 1), (2, 7), (1, 40)]:
            feeds = sample_inputs(cfg, batch, seq)
            with ref.create_execution_context() as c0, \
                    engine.create_execution_context() as c1:
                want, got = c0.execute(feeds)["logits"], c1.execute(feeds)["logits"]
            assert np.max(np.abs(got - want)) <= 3e-2 * (1 + np.max(np.abs(want)))

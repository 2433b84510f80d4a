"""CUDA dist_rt::MatMulCast (runtime/cuda/matmul_cast.py): cuBLAS with a float32 C vs NumPy.

Reference: NumPy's float32 matmul of the 16-bit operands widened to float32. cuBLAS
multiplies 16-bit values exactly in float32 and accumulates in float32 too (another
summation order), so the results agree within float32 accumulation error, far below the one
fp16/bf16 rounding that the unfused MatMul + Cast would add.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

import dist_rt
from dist_rt import Builder, BuilderConfig, dtypes
from dist_rt.errors import ExecutionError
from dist_rt.network import Network

pytestmark = pytest.mark.gpu

DTYPES = {"float16": np.dtype(np.float16), "bfloat16": dtypes.bfloat16}


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def mc(cp):
    from dist_rt.runtime.cuda import matmul_cast

    return matmul_cast


def _operands(rng, shape_a, shape_b, dtype):
    a = rng.standard_normal(shape_a).astype(np.float32).astype(dtype)
    b = (rng.standard_normal(shape_b) / np.sqrt(max(shape_b[0], 1))).astype(np.float32)
    return a, b.astype(dtype)


def _layer(a, b, to=TensorProto.FLOAT):
    net = Network("mmc")
    ins = [net.add_constant("a", a), net.add_constant("b", b)]
    return net.add_layer("MatMulCast", ins, {"to": to}, name="mmc", domain="dist_rt")


def _check(y, a, b):
    """``y`` within float32 accumulation error of the float32 product of ``a`` and ``b``."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    want = np.matmul(a32, b32)
    bound = np.matmul(np.abs(a32), np.abs(b32))
    k = a.shape[-1]
    assert y.shape == want.shape
    err = np.abs(y.astype(np.float64) - want)
    assert np.all(err <= 4 * k * 2.0**-24 * bound + 1e-6), float(np.max(err))


SHAPES = [((64, 256), (256, 128)),
          ((2, 17, 300), (300, 1000)),       # batch dims, uneven sizes
          ((3, 5, 8), (8, 7)),               # tiny, odd
          ((1, 1, 2048), (2048, 32000)),     # decode step on a Llama vocab
          ((0, 64), (64, 32)),               # no rows
          ((4, 0), (0, 16))]                 # K = 0: zeros


class TestWrapper:
    @pytest.mark.parametrize("shape_a, shape_b", SHAPES,
                             ids=["2d", "batch", "tiny", "vocab", "m0", "k0"])
    @pytest.mark.parametrize("dtype", sorted(DTYPES))
    def test_matches_numpy_float32(self, cp, mc, shape_a, shape_b, dtype):
        rng = np.random.default_rng(sum(shape_a) + 7 * sum(shape_b))
        a, b = _operands(rng, shape_a, shape_b, DTYPES[dtype])
        out = mc.matmul_cast(_layer(a, b), [cp.asarray(a), cp.asarray(b)], None)
        assert out is not None
        (y,) = out
        assert y.dtype == np.float32
        _check(cp.asnumpy(y), a, b)

    @pytest.mark.parametrize("dtype", sorted(DTYPES))
    def test_float32_output_is_not_rounded_to_16_bits(self, cp, mc, dtype):
        rng = np.random.default_rng(1)
        a, b = _operands(rng, (16, 1024), (1024, 512), DTYPES[dtype])
        (y,) = mc.matmul_cast(_layer(a, b), [cp.asarray(a), cp.asarray(b)], None)
        y = cp.asnumpy(y)
        rounded = y.astype(a.dtype).astype(np.float32)
        assert np.mean(y != rounded) > 0.9  # most values carry more than 16 bits

    def test_strided_operands(self, cp, mc):
        rng = np.random.default_rng(2)
        a, b = _operands(rng, (12, 520), (520, 264), np.float16)
        wide = cp.zeros((12, 600), dtype=cp.float16)
        wide[:, 40:560] = cp.asarray(a)
        (y,) = mc.matmul_cast(_layer(a, b), [wide[:, 40:560], cp.asarray(b)], None)
        _check(cp.asnumpy(y), a, b)
        a3 = cp.asarray(a).reshape(3, 4, 520)[:, ::2]  # not C-contiguous: copied first
        (y,) = mc.matmul_cast(_layer(a, b), [a3, cp.asarray(b)], None)
        _check(cp.asnumpy(y), cp.asnumpy(a3), b)

    def test_to_the_input_dtype(self, cp, mc):
        rng = np.random.default_rng(3)
        a, b = _operands(rng, (9, 130), (130, 70), np.float16)
        (y,) = mc.matmul_cast(_layer(a, b, TensorProto.FLOAT16),
                              [cp.asarray(a), cp.asarray(b)], None)
        assert y.dtype == np.float16
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32),
                                   a.astype(np.float32) @ b.astype(np.float32),
                                   rtol=2e-3, atol=2e-3)

    @pytest.mark.parametrize("case", ["batched_b", "a_1d", "mixed", "to_bf16", "fp32_to_fp16"])
    def test_declines_what_it_does_not_cover(self, cp, mc, case):
        rng = np.random.default_rng(4)
        f16 = np.float16
        a, b = _operands(rng, (2, 3, 16), (16, 5), f16)
        to = TensorProto.FLOAT
        if case == "batched_b":
            b = np.stack([b, b])
        elif case == "a_1d":
            a = a[0, 0]
        elif case == "mixed":
            b = b.astype(dtypes.bfloat16)
        elif case == "to_bf16":
            to = TensorProto.BFLOAT16
        else:
            a, b, to = a.astype(np.float32), b.astype(np.float32), TensorProto.FLOAT16
        layer = _layer(np.zeros((2, 3, 16), f16), np.zeros((16, 5), f16), to)
        assert mc.matmul_cast(layer, [cp.asarray(a), cp.asarray(b)], None) is None

    def test_matmul2d_out_dtype(self, cp):
        from dist_rt.runtime.cuda import cublas

        rng = np.random.default_rng(5)
        a, b = _operands(rng, (8, 64), (64, 24), np.float16)
        da, db = cp.asarray(a), cp.asarray(b)
        assert cublas.matmul2d(da, db).dtype == np.float16  # the default is unchanged
        assert cublas.matmul2d(da, db, out_dtype=np.float16).dtype == np.float16
        y = cublas.matmul2d(da, db, out_dtype=np.float32)
        assert y.dtype == np.float32
        _check(cp.asnumpy(y), a, b)
        out = cp.empty((8, 24), dtype=cp.float32)
        assert cublas.matmul2d(da, db, out=out, out_dtype=np.float32) is out
        with pytest.raises(ExecutionError, match="expected float32"):
            cublas.matmul2d(da, db, out=cp.empty((8, 24), cp.float16), out_dtype=np.float32)
        with pytest.raises(ExecutionError, match="cannot give float16"):
            cublas.matmul2d(da.astype(cp.float32), db.astype(cp.float32), out_dtype=np.float16)

    @pytest.mark.parametrize("dtype", sorted(DTYPES))
    def test_captured_in_a_cuda_graph(self, cp, mc, dtype):
        rng = np.random.default_rng(6)
        a, b = _operands(rng, (2, 64, 512), (512, 3000), DTYPES[dtype])
        layer = _layer(a, b)
        a, b = cp.asarray(a), cp.asarray(b)
        stream = cp.cuda.Stream(non_blocking=True)
        pool = cp.cuda.MemoryPool()
        relaxed = getattr(cp.cuda.runtime, "streamCaptureModeRelaxed", 2)
        with cp.cuda.using_allocator(pool.malloc), stream:
            (want,) = mc.matmul_cast(layer, [a, b], None)  # makes the cuBLAS handle
            stream.synchronize()
            stream.begin_capture(relaxed)
            (y,) = mc.matmul_cast(layer, [a, b], None)
            graph = stream.end_capture()
            y.fill(0)
            graph.launch(stream)
            stream.synchronize()
        np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want))

    def test_dispatch(self, cp, mc):
        from dist_rt.runtime.backends import cuda as cuda_backend

        layer = _layer(np.zeros((2, 4), np.float16), np.zeros((4, 3), np.float16))
        assert cuda_backend.dispatch(layer)[1] is mc.matmul_cast


class TestEngine:
    @pytest.mark.parametrize("precision, tol", [("fp16", 1e-2), ("bf16", 5e-2)])
    def test_llama_logits_match_cpu(self, cp, precision, tol):
        from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs

        cfg = LlamaConfig(hidden=256, layers=2, heads=4, kv_heads=2, mlp=512, vocab=1003)
        net = dist_rt.parse_onnx(make_llama(cfg))
        gpu = Builder(BuilderConfig(device="cuda", precision=precision, verify=True)).build(net)
        assert gpu.build_notes["fuse_matmul_cast"] == "1 MatMul+Cast pairs fused"
        (head,) = [lay for lay in gpu.network.layers if lay.op_type == "MatMulCast"]
        assert head.outputs[0].name == "logits" and head.inputs[1].name == "lm_head.weight"
        cpu = Builder(BuilderConfig(precision=precision, optimization_level=0)).build(net)
        for batch, seq in [(1, 1), (2, 37)]:
            feeds = sample_inputs(cfg, batch, seq)
            with cpu.create_execution_context() as c0, gpu.create_execution_context() as c1:
                want = c0.execute(feeds)["logits"]
                for _ in range(3):  # eager warm-up, capture, replay
                    got = c1.execute(feeds)["logits"]
                    assert got.dtype == np.float32
                    assert np.max(np.abs(got - want)) <= tol * (1 + np.max(np.abs(want)))
                assert [e.fallback for e in c1._cuda_graph_runner.graphs.values()] == [None]

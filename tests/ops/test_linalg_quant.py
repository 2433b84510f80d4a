"""Gemm, Einsum, MatMulInteger and (De)QuantizeLinear against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from _ort_util import compare

from dist_rt.errors import ShapeError
from dist_rt.network import Network

RNG = np.random.default_rng()


def _f(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


class TestGemm:
    @pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
    def test_transposes_and_bias(self, ta, tb):
        m, k, n = 5, 7, 3
        a = _f(k, m) if ta else _f(m, k)
        b = _f(n, k) if tb else _f(k, n)
        compare("Gemm", {"a": a, "b": b, "c": _f(n)},
                {"transA": ta, "transB": tb, "alpha": 0.5, "beta": 2.0})

    def test_no_bias_and_fp16(self):
        compare("Gemm", {"a": _f(4, 6), "b": _f(6, 5)})
        compare("Gemm", {"a": _f(4, 6, dtype=np.float16), "b": _f(6, 5, dtype=np.float16),
                         "c": _f(4, 1, dtype=np.float16)}, rtol=2e-3, atol=2e-3)

    def test_inner_mismatch(self):
        net = Network("n")
        a = net.add_input("a", np.float32, (4, 6))
        b = net.add_input("b", np.float32, (5, 3))
        with pytest.raises(ShapeError, match="'g'.*inner dims"):
            net.add_layer("Gemm", [a, b], {}, name="g")


class TestEinsum:
    @pytest.mark.parametrize("eq,shapes", [
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("ij->ji", [(3, 7)]),
        ("ii->i", [(4, 4)]),
        ("...ij,...jk", [(2, 3, 4), (2, 4, 6)]),
        ("i,i", [(5,), (5,)]),
        ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ])
    def test_equations(self, eq, shapes):
        feeds = {f"x{i}": _f(*s) for i, s in enumerate(shapes)}
        compare("Einsum", feeds, {"equation": eq}, rtol=1e-4, atol=1e-5)

    def test_inferred_shape(self):
        net = Network("n")
        a = net.add_input("a", np.float32, ("b", 3, 4))
        b = net.add_input("b", np.float32, ("b", 4, 5))
        layer = net.add_layer("Einsum", [a, b], {"equation": "bij,bjk->bik"}, name="e")
        assert layer.outputs[0].shape == ("b", 3, 5)


class TestQuant:
    @pytest.mark.parametrize("zdtype", [np.uint8, np.int8])
    def test_per_tensor_roundtrip(self, zdtype):
        x = _f(3, 8) * 4
        scale = np.array(0.05, np.float32)
        zp = np.array(3, zdtype)
        q = compare("QuantizeLinear", {"x": x, "s": scale, "z": zp})[0]
        compare("DequantizeLinear", {"q": q, "s": scale, "z": zp})

    def test_per_axis(self):
        x = _f(2, 4, 3)
        scale = RNG.uniform(0.01, 0.1, 4).astype(np.float32)
        zp = RNG.integers(-5, 5, 4).astype(np.int8)
        q = compare("QuantizeLinear", {"x": x, "s": scale, "z": zp}, {"axis": 1})[0]
        compare("DequantizeLinear", {"q": q, "s": scale, "z": zp}, {"axis": 1})

    def test_blocked(self):
        x = _f(6, 5)
        scale = RNG.uniform(0.01, 0.1, (6, 3)).astype(np.float32)
        zp = RNG.integers(0, 9, (6, 3)).astype(np.uint8)
        q = compare("QuantizeLinear", {"x": x, "s": scale, "z": zp},
                    {"axis": 1, "block_size": 2})[0]
        compare("DequantizeLinear", {"q": q, "s": scale, "z": zp}, {"axis": 1, "block_size": 2})

    def test_int32_dequant(self):
        q = RNG.integers(-1000, 1000, (7,)).astype(np.int32)
        compare("DequantizeLinear", {"q": q, "s": np.array(0.002, np.float32)})

    def test_bad_scale_shape(self):
        net = Network("n")
        x = net.add_input("x", np.float32, (2, 4))
        s = net.add_input("s", np.float32, (3,))
        layer = net.add_layer("QuantizeLinear", [x, s], {"axis": 1}, name="q")
        with pytest.raises(ShapeError, match=r"\(4,\)"):
            layer.op.run(layer, [_f(2, 4), np.ones(3, np.float32)], __import__(
                "dist_rt.ops", fromlist=["RunContext"]).RunContext())

    def test_matmul_integer(self):
        a = RNG.integers(0, 255, (5, 8)).astype(np.uint8)
        b = RNG.integers(0, 255, (8, 3)).astype(np.uint8)
        compare("MatMulInteger", {"a": a, "b": b, "za": np.array(12, np.uint8),
                                  "zb": np.array(130, np.uint8)})
        compare("MatMulInteger", {"a": a, "b": b})

"""Elementwise math ops against onnxruntime on fresh random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _ort_util import compare, one_node_model
from node_harness import run_model_on_ops

from dist_rt import dtypes
from dist_rt.errors import ShapeError
from dist_rt.network import Network
from dist_rt.ops._math import erf

RNG = np.random.default_rng()

UNARY = ["Exp", "Log", "Sqrt", "Reciprocal", "Tanh", "Sigmoid", "Erf", "Sin", "Cos", "Tan",
         "Atan", "Sinh", "Cosh", "Asinh", "Softsign", "Softplus", "Mish", "HardSigmoid",
         "HardSwish", "LeakyRelu", "Elu", "Selu", "Celu", "ThresholdedRelu", "Neg", "Abs",
         "Sign", "Floor", "Ceil", "Round"]
DOMAIN = {"Log": (0.1, 5), "Sqrt": (0.0, 5), "Reciprocal": (0.5, 3), "Acosh": (1.1, 4)}


def _rand(shape, dtype=np.float32, lo=-3.0, hi=3.0):
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


class TestUnary:
    @pytest.mark.parametrize("op", UNARY)
    def test_fp32_matches_ort(self, op):
        lo, hi = DOMAIN.get(op, (-3.0, 3.0))
        compare(op, {"x": _rand((3, 7, 5), lo=lo, hi=hi)})

    @pytest.mark.parametrize("op", ["Asin", "Acos", "Atanh"])
    def test_unit_domain(self, op):
        compare(op, {"x": _rand((11,), lo=-0.95, hi=0.95)})

    @pytest.mark.parametrize("op", ["Exp", "Sigmoid", "Tanh", "Erf", "Neg", "Abs", "Relu"])
    def test_fp16(self, op):
        compare(op, {"x": _rand((4, 9), np.float16)}, rtol=1e-3, atol=1e-3)

    @pytest.mark.parametrize("approximate", ["none", "tanh"])
    def test_gelu(self, approximate):
        compare("Gelu", {"x": _rand((5, 13))}, {"approximate": approximate})

    def test_attributes(self):
        x = _rand((2, 33))
        compare("LeakyRelu", {"x": x}, {"alpha": 0.3})
        compare("Elu", {"x": x}, {"alpha": 0.7})
        compare("HardSigmoid", {"x": x}, {"alpha": 0.3, "beta": 0.4})
        compare("Celu", {"x": x}, {"alpha": 2.0})

    def test_isnan_isinf(self):
        x = np.array([1.0, np.nan, np.inf, -np.inf, 0.0], dtype=np.float32)
        compare("IsNaN", {"x": x})
        compare("IsInf", {"x": x}, {"detect_negative": 0})

    def test_erf_accuracy(self):
        x = np.linspace(-7, 7, 20001)
        ref = np.array([math.erf(v) for v in x])
        assert np.max(np.abs(erf(np, x) - ref)) < 1e-12
        x32 = x.astype(np.float32)
        got = erf(np, x32).astype(np.float32)
        assert np.max(np.abs(got - ref.astype(np.float32))) <= 1e-6


BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "LessOrEqual", "Greater",
          "GreaterOrEqual", "Max", "Min", "Sum", "Mean", "PRelu"]


class TestBinary:
    @pytest.mark.parametrize("op", BINARY)
    def test_broadcast_fp32(self, op):
        a = _rand((2, 3, 5), lo=0.5 if op == "Pow" else -3.0)
        b = _rand((3, 1), lo=0.5, hi=2.0) if op != "PRelu" else _rand((5,))
        compare(op, {"a": a, "b": b}, rtol=1e-5)

    @pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8])
    @pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
    def test_integers(self, op, dtype):
        a = RNG.integers(-50 if dtype != np.uint8 else 0, 50, size=(4, 7)).astype(dtype)
        b = RNG.integers(1, 9, size=(7,)).astype(dtype)
        if np.dtype(dtype).kind == "i":
            b = b * np.where(RNG.random(7) < 0.5, -1, 1).astype(dtype)
        compare(op, {"a": a, "b": b})

    @pytest.mark.parametrize("fmod", [0, 1])
    def test_mod(self, fmod):
        a = RNG.integers(-40, 40, size=(3, 5)).astype(np.int32)
        b = RNG.choice([-7, -3, 2, 5], size=(5,)).astype(np.int32)
        compare("Mod", {"a": a, "b": b}, {"fmod": fmod})
        compare("Mod", {"a": _rand((3, 5)), "b": _rand((5,), lo=0.5, hi=2.0)}, {"fmod": 1})

    def test_pow_int_exponent(self):
        compare("Pow", {"a": _rand((6,), lo=0.5), "b": np.arange(6, dtype=np.int64)})

    def test_logic_and_bitwise(self):
        p, q = RNG.random((3, 4)) < 0.5, RNG.random((4,)) < 0.5
        for op in ("And", "Or", "Xor"):
            compare(op, {"a": p, "b": q})
        compare("Not", {"a": p})
        i, j = (RNG.integers(0, 255, size=s).astype(np.uint8) for s in ((3, 4), (4,)))
        for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
            compare(op, {"a": i, "b": j})
        compare("BitwiseNot", {"a": i})
        compare("BitShift", {"a": i, "b": RNG.integers(0, 8, (4,)).astype(np.uint8)},
                {"direction": "LEFT"})

    def test_where_and_clip(self):
        cond = RNG.random((2, 1, 5)) < 0.5
        compare("Where", {"c": cond, "x": _rand((3, 5)), "y": _rand((1,))})
        x = _rand((4, 6))
        compare("Clip", {"x": x}, consts={"lo": np.array(-1.0, np.float32),
                                          "hi": np.array(0.5, np.float32)})
        compare("Clip", {"x": x})
        compare("Clip", {"x": x}, {"min": -0.5, "max": 0.2}, opset=6)
        compare("Clip", {"x": RNG.integers(-9, 9, (7,)).astype(np.int8)},
                consts={"lo": np.array(-2, np.int8)})

    def test_variadic_three_inputs(self):
        feeds = {"a": _rand((2, 1, 4)), "b": _rand((3, 1)), "c": _rand((4,))}
        for op in ("Sum", "Max", "Min", "Mean"):
            compare(op, feeds)

    @pytest.mark.parametrize("to", [10, 6, 7, 9, 11])
    def test_cast(self, to):
        x = _rand((3, 5)) * 10
        compare("Cast", {"x": x}, {"to": to})
        compare("CastLike", {"x": x, "like": np.zeros(1, np.float16)})

    def test_cast_bf16_and_float8(self):
        # onnxruntime cannot hand bf16 back to NumPy: compare with ml_dtypes' rounding.
        x = np.concatenate([_rand((17,)) * 100, [1e6, -1e6, np.inf]]).astype(np.float32)
        model = one_node_model("Cast", {"x": x}, {"to": 16}, out_dtypes=[np.float32])
        got = run_model_on_ops(model, [x])[0]
        assert got.dtype == dtypes.bfloat16
        np.testing.assert_array_equal(got, x.astype(dtypes.bfloat16))
        model = one_node_model("Cast", {"x": x}, {"to": 17}, out_dtypes=[np.float32])
        got = run_model_on_ops(model, [x])[0].astype(np.float32)
        assert got[-3] == 448 and got[-2] == -448 and got[-1] == 448  # saturated


class TestInference:
    def test_symbolic_broadcast(self):
        net = Network("n")
        a = net.add_input("a", np.float32, ("batch", 1, 8))
        b = net.add_input("b", np.float32, (3, 1))
        layer = net.add_layer("Add", [a, b], {}, name="add")
        assert layer.outputs[0].shape == ("batch", 3, 8)
        cmp = net.add_layer("Less", [a, b], {}, name="lt")
        assert cmp.outputs[0].dtype == np.bool_

    def test_shape_mismatch_names_layer(self):
        net = Network("n")
        a = net.add_input("a", np.float32, (2, 4))
        b = net.add_input("b", np.float32, (3,))
        with pytest.raises(ShapeError, match="my_add"):
            net.add_layer("Add", [a, b], {}, name="my_add")

    def test_dtype_mismatch(self):
        net = Network("n")
        a = net.add_input("a", np.float32, (2,))
        b = net.add_input("b", np.int32, (2,))
        with pytest.raises(ShapeError, match="dtype"):
            net.add_layer("Mul", [a, b], {}, name="m")

    def test_wrong_arity(self):
        net = Network("n")
        a = net.add_input("a", np.float32, (2,))
        with pytest.raises(ShapeError, match="expected 2"):
            net.add_layer("Sub", [a], {}, name="s")

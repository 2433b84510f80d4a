"""dist_rt::MatMulCast: the NumPy reference, shape inference and its errors.

The reference is checked against a float64 product of the same (16-bit) operands: with
``to`` float32 it must be within float32 accumulation error (far below one fp16 ulp, which
is what the unfused ``Cast(MatMul)`` would lose); with a 16-bit ``to``, within one rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from dist_rt import Builder, BuilderConfig, dtypes
from dist_rt.errors import DistRtError, ShapeError
from dist_rt.network import Network
from dist_rt.ops import RunContext
from dist_rt.ops.matmul_cast import INPUT_DTYPES

DTYPES = {"float16": np.dtype(np.float16), "bfloat16": dtypes.bfloat16}
#: Relative size of half an ulp of each output dtype (one rounding).
HALF_ULP = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float16): 2.0**-11,
            dtypes.bfloat16: 2.0**-8}


def _operands(rng, shape_a, shape_b, dtype):
    a = rng.standard_normal(shape_a).astype(np.float32).astype(dtype)
    b = (rng.standard_normal(shape_b) / np.sqrt(max(shape_b[0], 1))).astype(np.float32)
    return a, b.astype(dtype)


def _network(a_dtype, a_shape, b, to=TensorProto.FLOAT, b_input=False) -> Network:
    """``Y = MatMulCast(a, b)``, a an input, b a constant (or an input with ``b_input``)."""
    net = Network("mmc")
    x = net.add_input("a", a_dtype, a_shape)
    w = net.add_input("b", b.dtype, b.shape) if b_input else net.add_constant("b", b)
    y = net.add_layer("MatMulCast", [x, w], {"to": to}, name="mmc", domain="dist_rt")
    net.mark_output(y.outputs[0])
    return net


def _check(y, a, b, to):
    """``y`` within float32 accumulation error plus one rounding to ``to`` of the product."""
    ref = a.astype(np.float64) @ b.astype(np.float64)
    bound = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))  # error scale
    k = a.shape[-1]
    err = np.abs(np.asarray(y, np.float64) - ref)
    tol = HALF_ULP[np.dtype(to)] * np.abs(ref) + 2 * k * 2.0**-24 * bound + 1e-30
    assert np.all(err <= tol), float(np.max(err / tol))


SHAPES = [((5, 7), (7, 3)),
          ((2, 3, 33), (33, 17)),           # batch dims, 2-D B (the lm_head case)
          ((2, 1, 4, 16), (3, 16, 9)),      # broadcast batch dims
          ((16,), (16, 5)),                 # 1-D A
          ((4, 16), (16,)),                 # 1-D B
          ((13,), (13,)),                   # dot product -> scalar
          ((0, 8), (8, 4)),                 # no rows
          ((3, 0), (0, 5))]                 # K = 0: zeros


class TestReference:
    @pytest.mark.parametrize("shape_a, shape_b", SHAPES,
                             ids=["2d", "batch", "broadcast", "a1d", "b1d", "dot", "m0", "k0"])
    @pytest.mark.parametrize("dtype", sorted(DTYPES))
    def test_matches_numpy(self, shape_a, shape_b, dtype):
        rng = np.random.default_rng(sum(shape_a) * 31 + sum(shape_b))
        a, b = _operands(rng, shape_a, shape_b, DTYPES[dtype])
        net = _network(a.dtype, a.shape, b)
        want_shape = np.matmul(np.zeros(shape_a), np.zeros(shape_b)).shape
        assert net.outputs[0].shape == want_shape and net.outputs[0].dtype == np.float32
        engine = Builder(BuilderConfig(verify=True)).build(net)
        with engine.create_execution_context() as ctx:
            (y,) = ctx.execute({"a": a}).values()
        assert y.shape == want_shape and y.dtype == np.float32
        _check(y, a, b, np.float32)

    @pytest.mark.parametrize("dtype", sorted(DTYPES))
    def test_float32_output_keeps_what_fp16_rounding_loses(self, dtype):
        rng = np.random.default_rng(7)
        a, b = _operands(rng, (8, 512), (512, 300), DTYPES[dtype])
        layer = _network(a.dtype, a.shape, b).layer("mmc")
        (y,) = layer.op.run(layer, [a, b], RunContext())
        ref = a.astype(np.float64) @ b.astype(np.float64)
        fused = np.max(np.abs(y - ref) / (1 + np.abs(ref)))
        unfused = np.max(np.abs(ref.astype(a.dtype).astype(np.float64) - ref) / (1 + np.abs(ref)))
        assert fused < 1e-5 < unfused  # the 16-bit intermediate is really gone

    @pytest.mark.parametrize("to", [TensorProto.FLOAT16, TensorProto.BFLOAT16,
                                    TensorProto.FLOAT])
    @pytest.mark.parametrize("dtype", sorted(DTYPES))
    def test_to_any_float(self, dtype, to):
        rng = np.random.default_rng(to)
        a, b = _operands(rng, (3, 5, 40), (40, 11), DTYPES[dtype])
        layer = _network(a.dtype, a.shape, b, to=to).layer("mmc")
        (y,) = layer.op.run(layer, [a, b], RunContext())
        assert y.dtype == dtypes.from_onnx(to) and y.shape == (3, 5, 11)
        _check(y, a, b, y.dtype)

    def test_float32_inputs(self):
        rng = np.random.default_rng(8)
        a, b = _operands(rng, (6, 70), (70, 9), np.float32)
        layer = _network(a.dtype, a.shape, b, to=TensorProto.FLOAT16).layer("mmc")
        (y,) = layer.op.run(layer, [a, b], RunContext())
        assert y.dtype == np.float16
        _check(y, a, b, np.float16)

    def test_symbolic_shape_inference(self):
        net = Network("mmc")
        x = net.add_input("a", np.float16, ("batch", "seq", 64))
        w = net.add_constant("b", np.zeros((64, 100), np.float16))
        y = net.add_layer("MatMulCast", [x, w], {"to": TensorProto.FLOAT},
                          domain="dist_rt").outputs[0]
        assert y.shape == ("batch", "seq", 100) and y.dtype == np.float32
        z = net.add_input("c", dtypes.bfloat16, ("batch", 1, "k"))
        v = net.add_input("d", dtypes.bfloat16, (4, "k", 8))
        y = net.add_layer("MatMulCast", [z, v], {"to": TensorProto.BFLOAT16},
                          domain="dist_rt").outputs[0]
        assert y.shape == (4, 1, 8)  # "batch" broadcasts against 4
        assert y.dtype == dtypes.bfloat16


class TestErrors:
    @pytest.mark.parametrize("a, b, match", [
        ((np.float16, (2, 32)), (dtypes.bfloat16, (32, 8)),
         r"input 1 \(B\) has dtype bfloat16, expected float16 like A"),
        ((np.float16, (2, 31)), (np.float16, (32, 8)),
         r"inner dims differ: input 0 \(A\) has shape \(2, 31\), input 1 \(B\) has shape "
         r"\(32, 8\)"),
        ((np.float16, ()), (np.float16, (32, 8)),
         r"input 0 \(A\) is a scalar, expected rank >= 1"),
        ((np.float16, (2, 32)), (np.float16, ()),
         r"input 1 \(B\) is a scalar, expected rank >= 1"),
        ((np.int32, (2, 32)), (np.int32, (32, 8)),
         r"input 0 \(A\) has dtype int32, expected float16, bfloat16 or float32"),
        ((np.float64, (2, 32)), (np.float64, (32, 8)),
         r"input 0 \(A\) has dtype float64, expected float16, bfloat16 or float32"),
        ((np.float16, (2, 3, 32)), (np.float16, (5, 32, 8)),
         r"shapes \(2,\), \(5,\) do not broadcast"),
    ], ids=["dtype_mismatch", "inner_dim", "scalar_a", "scalar_b", "int", "float64",
            "batch"])
    def test_bad_inputs_name_layer_and_expectation(self, a, b, match):
        rng = np.random.default_rng(4)
        x = rng.standard_normal(a[1]).astype(a[0])
        w = rng.standard_normal(b[1]).astype(b[0])
        # At build time (shape inference) ...
        with pytest.raises(ShapeError, match=r"layer 'mmc' \(MatMulCast\): .*" + match):
            _network(x.dtype, x.shape, w)
        # ... and at run time on arrays (the layer built from valid shapes), except two
        # different input dtypes: the math is float32 either way (see the next test).
        ok = _network(np.float16, (2, 32), np.zeros((32, 8), np.float16), b_input=True)
        layer = ok.layer("mmc")
        if x.dtype != w.dtype and {x.dtype, w.dtype} <= INPUT_DTYPES:
            return
        with pytest.raises(DistRtError, match=r"'mmc'.*" + match):
            layer.op.run(layer, [x, w], RunContext())

    def test_run_takes_float32_for_a_declared_16_bit_input(self):
        # NumPy's bf16 matmul returns float32, so an upstream bf16 MatMul on the CPU hands
        # this layer float32 arrays where bf16 was declared; they compute as they are.
        rng = np.random.default_rng(5)
        a, b = _operands(rng, (3, 24), (24, 6), dtypes.bfloat16)
        layer = _network(a.dtype, a.shape, b).layer("mmc")
        (y,) = layer.op.run(layer, [a.astype(np.float32), b], RunContext())
        assert y.dtype == np.float32
        _check(y, a, b, np.float32)

    @pytest.mark.parametrize("to, match", [
        (TensorProto.INT32, r"attribute 'to' is int32, expected a float type"),
        (None, r"attribute 'to' is missing"),
        (12345, r"cannot cast to ONNX type 12345"),
    ])
    def test_bad_to(self, to, match):
        net = Network("mmc")
        x = net.add_input("a", np.float16, (2, 4))
        w = net.add_constant("b", np.zeros((4, 3), np.float16))
        attrs = {} if to is None else {"to": to}
        with pytest.raises(ShapeError, match=r"layer 'mmc' \(MatMulCast\): " + match):
            net.add_layer("MatMulCast", [x, w], attrs, name="mmc", domain="dist_rt")

    def test_wrong_input_count(self):
        net = Network("mmc")
        x = net.add_input("a", np.float16, (2, 4))
        with pytest.raises(ShapeError, match=r"layer 'mmc' \(MatMulCast\): got 1 inputs, "
                                             r"expected 2"):
            net.add_layer("MatMulCast", [x], {"to": TensorProto.FLOAT}, name="mmc",
                          domain="dist_rt")

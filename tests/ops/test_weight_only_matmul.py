"""dist_rt::WeightOnlyMatMul: the NumPy reference, shape inference and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt import Builder, BuilderConfig, dtypes
from dist_rt.errors import DistRtError, ShapeError
from dist_rt.network import Network
from dist_rt.ops import RunContext


def _reference(a, wq, scale, zp):
    """float64 ``A @ ((Wq - zp) * scale)``."""
    w = wq.astype(np.float64)
    if zp is not None:
        w = w - zp.astype(np.float64).reshape(-1)
    return a.astype(np.float64) @ (w * scale.astype(np.float64).reshape(-1))


def _operands(rng, lead, k, n, wdt, per_channel, with_zp, adt=np.float32):
    info = np.iinfo(wdt)
    a = rng.standard_normal((*lead, k)).astype(adt)
    wq = rng.integers(info.min, info.max + 1, (k, n)).astype(wdt)
    shape = (n,) if per_channel else ()
    scale = (rng.random(shape) * 0.02 + 1e-3).astype(np.float32)
    zp = rng.integers(info.min, info.max + 1, shape).astype(wdt) if with_zp else None
    return a, wq, scale, zp


def _network(a, wq, scale, zp, k_dim=None) -> Network:
    net = Network("woq")
    x = net.add_input("a", a.dtype, (*a.shape[:-1], k_dim or a.shape[-1]))
    ins = [x, net.add_constant("wq", wq), net.add_constant("scale", scale)]
    if zp is not None:
        ins.append(net.add_constant("zp", zp))
    net.mark_output(net.add_layer("WeightOnlyMatMul", ins, name="woq", domain="dist_rt")
                    .outputs[0])
    return net


class TestReference:
    @pytest.mark.parametrize("lead, k, n", [((1,), 1000, 1027), ((5,), 64, 4), ((2, 3), 33, 17),
                                            ((2, 1, 3), 130, 129)])
    @pytest.mark.parametrize("wdt", [np.int8, np.uint8])
    @pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
    @pytest.mark.parametrize("with_zp", [False, True], ids=["no_zp", "zp"])
    def test_matches_numpy(self, lead, k, n, wdt, per_channel, with_zp):
        rng = np.random.default_rng(k + n)
        a, wq, scale, zp = _operands(rng, lead, k, n, wdt, per_channel, with_zp)
        net = _network(a, wq, scale, zp)
        assert net.outputs[0].shape == (*lead, n) and net.outputs[0].dtype == np.float32
        with Builder(BuilderConfig(verify=True)).build(net).create_execution_context() as ctx:
            (y,) = ctx.execute({"a": a}).values()
        assert y.shape == (*lead, n) and y.dtype == np.float32
        np.testing.assert_allclose(y, _reference(a, wq, scale, zp), rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("adt", [np.float16, dtypes.bfloat16, np.float64])
    def test_keeps_activation_dtype(self, adt):
        rng = np.random.default_rng(1)
        a, wq, scale, zp = _operands(rng, (3,), 40, 12, np.int8, True, True, adt)
        layer = _network(a, wq, scale, zp).layer("woq")
        (y,) = layer.op.run(layer, [a, wq, scale, zp], RunContext())
        assert y.dtype == np.dtype(adt)
        tol = 1e-12 if adt == np.float64 else 2e-2
        np.testing.assert_allclose(y.astype(np.float64), _reference(a, wq, scale, zp),
                                   rtol=tol, atol=tol)

    def test_one_element_scale_and_zero_point(self):
        rng = np.random.default_rng(2)
        a, wq, _, _ = _operands(rng, (2,), 16, 8, np.uint8, True, False)
        scale, zp = np.array([0.05], np.float32), np.array([128], np.uint8)
        layer = _network(a, wq, scale, zp).layer("woq")
        (y,) = layer.op.run(layer, [a, wq, scale, zp], RunContext())
        np.testing.assert_allclose(y, _reference(a, wq, scale, zp), rtol=1e-5, atol=1e-5)

    def test_symbolic_shape_inference(self):
        rng = np.random.default_rng(3)
        a, wq, scale, _ = _operands(rng, (2, 3), 24, 10, np.int8, True, False)
        net = Network("woq")
        x = net.add_input("a", np.float16, ("batch", "seq", 24))
        y = net.add_layer("WeightOnlyMatMul", [x, net.add_constant("wq", wq),
                                               net.add_constant("scale", scale)],
                          domain="dist_rt").outputs[0]
        assert y.shape == ("batch", "seq", 10) and y.dtype == np.float16


class TestErrors:
    @pytest.mark.parametrize("change, match", [
        ({"k": 31}, r"input 0 \(A\) has shape \(2, 31\), expected \(\.\.\., 32\)"),
        ({"wq": np.int16}, r"input 1 \(Wq\) has dtype int16, expected int8 or uint8"),
        ({"wq_rank": 3}, r"input 1 \(Wq\) has shape \(2, 32, 8\), expected \(K, N\)"),
        ({"scale_n": 7}, r"input 2 \(scale\) has shape \(7,\), expected a scalar or \(8,\)"),
        ({"zp": np.uint8}, r"input 3 \(zero_point\) has dtype uint8, expected int8 like Wq"),
        ({"zp_n": 1}, r"input 3 \(zero_point\) has shape \(1,\), expected \(8,\) like scale"),
        ({"a": np.int32}, r"input 0 \(A\) has dtype int32, expected a float dtype"),
    ])
    def test_bad_inputs_name_layer_and_expectation(self, change, match):
        rng = np.random.default_rng(4)
        a = rng.standard_normal((2, change.get("k", 32))).astype(change.get("a", np.float32))
        wq = rng.integers(-8, 8, (32, 8)).astype(change.get("wq", np.int8))
        if change.get("wq_rank") == 3:
            wq = np.stack([wq, wq])
        scale = np.ones(change.get("scale_n", 8), np.float32)
        zp = np.zeros(change.get("zp_n", 8), change.get("zp", np.int8))
        # At build time (shape inference) ...
        with pytest.raises(ShapeError, match="layer 'woq' \\(WeightOnlyMatMul\\): " + match):
            _network(a, wq, scale, zp)
        # ... and at run time on arrays (the layer built from valid shapes).
        ok = _network(np.zeros((2, 32), np.float32), np.zeros((32, 8), np.int8),
                      np.ones(8, np.float32), np.zeros(8, np.int8))
        layer = ok.layer("woq")
        with pytest.raises(DistRtError, match=match):
            layer.op.run(layer, [a, wq, scale, zp], RunContext())

    def test_wrong_input_count(self):
        net = Network("woq")
        x = net.add_input("a", np.float32, (2, 4))
        with pytest.raises(ShapeError, match="got 2 inputs, expected 3 to 4"):
            net.add_layer("WeightOnlyMatMul", [x, net.add_constant("w", np.zeros((4, 2),
                                                                                np.int8))],
                          name="woq", domain="dist_rt")

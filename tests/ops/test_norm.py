"""The normalization ops against onnxruntime on random data, plus bad input."""

from __future__ import annotations

import numpy as np
import pytest
from _ort_util import compare

from dist_rt.errors import DistRtError, ShapeError
from dist_rt.network import Network
from dist_rt.ops import RunContext

RNG = np.random.default_rng(3)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("shape", [(2, 3), (2, 5, 3), (1, 3, 4, 5)])
def test_batch_norm_inference(shape):
    c = shape[1]
    feeds = {"x": rand(*shape), "s": rand(c), "b": rand(c), "m": rand(c),
             "v": RNG.uniform(0.5, 2, c).astype(np.float32)}
    compare("BatchNormalization", feeds, {"epsilon": 1e-3}, opset=15, rtol=1e-5, atol=1e-5)


def test_batch_norm_training_outputs():
    c = 3
    x = rand(4, c, 5)
    mean, var = rand(c), RNG.uniform(0.5, 2, c).astype(np.float32)
    feeds = {"x": x, "s": rand(c), "b": rand(c), "m": mean, "v": var}
    net = Network("n", opset=15)
    for k, v in feeds.items():
        net.add_input(k, v.dtype, v.shape)
    layer = net.add_layer("BatchNormalization", list(feeds), {"training_mode": 1,
                                                              "momentum": 0.8}, outputs=3)
    y, rm, rv = layer.op.run(layer, list(feeds.values()), RunContext())
    bm, bv = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    ref = (x - bm[None, :, None]) / np.sqrt(bv[None, :, None] + 1e-5) * feeds["s"][:, None] \
        + feeds["b"][:, None]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rm, mean * 0.8 + bm * 0.2, rtol=1e-5)
    np.testing.assert_allclose(rv, var * 0.8 + bv * 0.2, rtol=1e-5)


def test_instance_norm():
    compare("InstanceNormalization", {"x": rand(2, 3, 5, 4), "s": rand(3), "b": rand(3)},
            {"epsilon": 1e-4}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_layer_norm(axis):
    x = rand(2, 3, 5)
    norm_shape = x.shape[axis:] if axis >= 0 else x.shape[axis:]
    feeds = {"x": x, "s": rand(*norm_shape), "b": rand(*norm_shape)}
    compare("LayerNormalization", feeds, {"axis": axis}, n_outputs=3, opset=17, rtol=1e-4,
            atol=1e-5)


def test_layer_norm_fp16_stats_in_fp32():
    x = (rand(2, 7) * 100 + 1000).astype(np.float16)
    net = Network("n", opset=17)
    net.add_input("x", np.float16, x.shape)
    net.add_input("s", np.float16, (7,))
    layer = net.add_layer("LayerNormalization", ["x", "s"], {}, outputs=3)
    y, mean, _ = layer.op.run(layer, [x, np.ones(7, np.float16)], RunContext())
    xf = x.astype(np.float64)
    ref = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-5)
    assert y.dtype == np.float16 and mean.dtype == np.float32
    np.testing.assert_allclose(y.astype(np.float64), ref, atol=5e-3)


@pytest.mark.parametrize("axis", [-1, 1])
def test_rms_norm(axis):
    x = rand(2, 4, 6)
    scale = rand(*x.shape[axis:])
    compare("RMSNormalization", {"x": x, "s": scale}, {"axis": axis}, opset=23, rtol=1e-4,
            atol=1e-5)


@pytest.mark.parametrize("opset", [18, 21])
def test_group_norm(opset):
    x = rand(2, 6, 3, 4)
    groups = 3
    n = 6 if opset >= 21 else groups
    compare("GroupNormalization", {"x": x, "s": rand(n), "b": rand(n)},
            {"num_groups": groups, "epsilon": 1e-4}, opset=opset, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("p,axis", [(1, -1), (2, 0), (2, 1)])
def test_lp_norm(p, axis):
    compare("LpNormalization", {"x": rand(3, 5, 2)}, {"p": p, "axis": axis}, rtol=1e-5,
            atol=1e-6)


@pytest.mark.parametrize("axes", [None, [0, 1], [2, 3]])
def test_mvn(axes):
    attrs = {} if axes is None else {"axes": axes}
    compare("MeanVarianceNormalization", {"x": rand(2, 3, 4, 5)}, attrs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(size):
    compare("LRN", {"x": rand(2, 7, 3, 4)}, {"size": size, "alpha": 0.01, "beta": 0.6,
                                            "bias": 1.5}, rtol=1e-5, atol=1e-6)


def test_lrn_even_size_numpy():
    """onnxruntime rejects even sizes; the window is [c - 1, c + 2] for size 4 per the spec."""
    x = rand(1, 6, 2, 3)
    net = Network("n")
    net.add_input("x", np.float32, x.shape)
    layer = net.add_layer("LRN", ["x"], {"size": 4})
    (y,) = layer.op.run(layer, [x], RunContext())
    sq = np.pad(x * x, [(0, 0), (1, 2), (0, 0), (0, 0)])
    total = sum(sq[:, i:i + 6] for i in range(4))
    np.testing.assert_allclose(y, x / (1 + 1e-4 / 4 * total) ** 0.75, rtol=1e-6)


def test_group_norm_bad_groups():
    net = Network("n", opset=21)
    net.add_input("x", np.float32, (1, 6, 2, 2))
    net.add_input("s", np.float32, (6,))
    net.add_input("b", np.float32, (6,))
    layer = net.add_layer("GroupNormalization", ["x", "s", "b"], {"num_groups": 4}, name="gn")
    with pytest.raises(ShapeError, match="layer 'gn'.*num_groups 4 must divide the 6"):
        layer.op.run(layer, [rand(1, 6, 2, 2), rand(6), rand(6)], RunContext())


def test_batch_norm_bad_param():
    net = Network("n", opset=15)
    names = ["x", "s", "b", "m", "v"]
    for n in names:
        net.add_input(n, np.float32, (1, 3, 2) if n == "x" else (3,))
    layer = net.add_layer("BatchNormalization", names, {}, name="bn")
    args = [rand(1, 3, 2), rand(4), rand(3), rand(3), rand(3)]
    with pytest.raises(ShapeError, match="layer 'bn'.*scale \\(input 1\\).*expected 3"):
        layer.op.run(layer, args, RunContext())


def test_layer_norm_bad_axis():
    net = Network("n", opset=17)
    net.add_input("x", np.float32, (2, 3))
    net.add_input("s", np.float32, (3,))
    with pytest.raises(DistRtError, match="layer 'ln'.*axis 5 is out of range"):
        net.add_layer("LayerNormalization", ["x", "s"], {"axis": 5}, name="ln")

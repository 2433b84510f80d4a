"""MaxPool, AveragePool, LpPool and the global pools against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from _ort_util import compare

from dist_rt.errors import DistRtError
from dist_rt.network import Network

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


POOL_CASES = [
    ({"kernel_shape": [3]}, (2, 3, 10)),
    ({"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}, (1, 2, 7, 6)),
    ({"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, (1, 2, 8, 7)),
    ({"kernel_shape": [2, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 3, 7, 5)),
    ({"kernel_shape": [3, 2], "auto_pad": "SAME_LOWER"}, (1, 1, 5, 6)),
    ({"kernel_shape": [2, 2, 2], "strides": [1, 2, 1]}, (1, 2, 4, 5, 3)),
]


@pytest.mark.parametrize("attrs,shape", POOL_CASES + [
    ({"kernel_shape": [2, 2], "dilations": [2, 1], "strides": [1, 2]}, (1, 2, 7, 7)),
])
def test_max_pool(attrs, shape):
    compare("MaxPool", {"x": rand(*shape)}, attrs, opset=22)


@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_indices(storage_order):
    attrs = {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [1, 1, 0, 1],
             "storage_order": storage_order}
    compare("MaxPool", {"x": rand(2, 3, 5, 7)}, attrs, n_outputs=2, opset=12)


def test_max_pool_int8():
    x = RNG.integers(-128, 127, (1, 2, 5, 5)).astype(np.int8)
    compare("MaxPool", {"x": x}, {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]}, opset=22)


@pytest.mark.parametrize("include", [0, 1])
@pytest.mark.parametrize("attrs,shape", POOL_CASES)
def test_average_pool(attrs, shape, include):
    compare("AveragePool", {"x": rand(*shape)}, dict(attrs, count_include_pad=include),
            opset=22, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    attrs = {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1], "p": p}
    compare("LpPool", {"x": rand(1, 2, 6, 5)}, attrs, opset=18, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 2, 3, 7), (1, 2, 2, 3, 3)])
def test_global_pools(op, shape):
    compare(op, {"x": rand(*shape)}, {}, rtol=1e-5, atol=1e-6)


def test_bad_kernel_shape():
    net = Network("n")
    net.add_input("x", np.float32, (1, 2, 5, 5))
    with pytest.raises(DistRtError, match="layer 'pool'.*kernel_shape"):
        net.add_layer("MaxPool", ["x"], {"kernel_shape": [2]}, name="pool")


def test_rank_too_small():
    net = Network("n")
    net.add_input("x", np.float32, (4, 5))
    with pytest.raises(DistRtError, match="layer 'gap'.*at least one spatial dim"):
        net.add_layer("GlobalAveragePool", ["x"], {}, name="gap")

"""Conv and ConvTranspose against onnxruntime on random data, plus bad input."""

from __future__ import annotations

import numpy as np
import pytest
from _ort_util import compare

from dist_rt.errors import DistRtError, ShapeError
from dist_rt.network import Network

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


class TestConv:
    @pytest.mark.parametrize("attrs,x,w,bias", [
        ({}, (2, 3, 7), (4, 3, 3), True),  # 1-D
        ({"pads": [1, 2, 0, 1], "strides": [2, 1]}, (1, 3, 7, 6), (5, 3, 3, 2), True),
        ({"dilations": [2, 1], "group": 3}, (2, 6, 9, 5), (6, 2, 3, 3), False),
        ({"auto_pad": "SAME_UPPER", "strides": [2, 3]}, (1, 2, 7, 8), (3, 2, 3, 4), True),
        ({"auto_pad": "SAME_LOWER"}, (1, 2, 5, 6), (3, 2, 2, 3), False),
        ({"auto_pad": "VALID", "strides": [2, 2]}, (1, 2, 7, 7), (2, 2, 3, 3), True),
        ({"pads": [1, 0, 1, 1, 1, 0]}, (1, 2, 4, 5, 3), (3, 2, 2, 3, 2), True),  # 3-D
        ({"group": 4}, (1, 4, 5, 5), (4, 1, 3, 3), True),  # depthwise
    ])
    def test_matches_onnxruntime(self, attrs, x, w, bias):
        feeds = {"x": rand(*x), "w": rand(*w)}
        if bias:
            feeds["b"] = rand(w[0])
        compare("Conv", feeds, attrs, rtol=1e-4, atol=1e-4)

    def test_channel_mismatch_names_layer(self):
        net = Network("n")
        net.add_input("x", np.float32, (1, 3, 5, 5))
        net.add_constant("w", rand(4, 2, 3, 3))
        with pytest.raises(ShapeError, match="layer 'bad_conv'.*3 channels"):
            net.add_layer("Conv", ["x", "w"], {}, name="bad_conv")

    def test_kernel_too_large(self):
        net = Network("n")
        net.add_input("x", np.float32, (1, 1, 2, 2))
        net.add_constant("w", rand(1, 1, 3, 3))
        with pytest.raises(DistRtError, match="layer 'c'.*kernel extent 3"):
            net.add_layer("Conv", ["x", "w"], {}, name="c")


class TestConvTranspose:
    @pytest.mark.parametrize("attrs,x,w,bias", [
        ({}, (2, 3, 5), (3, 2, 3), True),
        ({"strides": [2, 3], "pads": [1, 0, 0, 2]}, (1, 2, 4, 5), (2, 3, 3, 3), True),
        ({"strides": [2, 2], "output_padding": [1, 0]}, (1, 2, 3, 4), (2, 2, 3, 2), False),
        ({"dilations": [2, 1], "group": 2}, (1, 4, 3, 5), (4, 3, 2, 3), True),
        ({"strides": [2, 2], "output_shape": [8, 9]}, (1, 1, 3, 4), (1, 2, 3, 3), False),
        ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, (1, 2, 3, 3), (2, 2, 3, 3), True),
        ({"strides": [1, 2, 1]}, (1, 2, 2, 3, 2), (2, 2, 2, 2, 2), True),  # 3-D
    ])
    def test_matches_onnxruntime(self, attrs, x, w, bias):
        feeds = {"x": rand(*x), "w": rand(*w)}
        if bias:
            feeds["b"] = rand(w[1] * attrs.get("group", 1))
        compare("ConvTranspose", feeds, attrs, rtol=1e-4, atol=1e-4)

    def test_bad_weight(self):
        net = Network("n")
        net.add_input("x", np.float32, (1, 3, 4, 4))
        net.add_constant("w", rand(2, 2, 3, 3))
        layer = net.add_layer("ConvTranspose", ["x", "w"], {}, name="deconv")
        from dist_rt.ops import RunContext
        with pytest.raises(ShapeError, match="layer 'deconv'.*3 input channels"):
            layer.op.run(layer, [rand(1, 3, 4, 4), rand(2, 2, 3, 3)], RunContext())

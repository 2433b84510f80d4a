"""Resize and Upsample against onnxruntime on random data, plus bad input."""

from __future__ import annotations

import numpy as np
import pytest
from _ort_util import compare

from dist_rt.errors import ShapeError
from dist_rt.network import Network
from dist_rt.ops import RunContext

RNG = np.random.default_rng(5)
X = RNG.standard_normal((1, 2, 5, 10)).astype(np.float32)
EMPTY = np.zeros(0, np.float32)


def _scales(*s):
    return np.array(s, np.float32)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("ctm", ["half_pixel", "align_corners", "asymmetric",
                                 "pytorch_half_pixel", "half_pixel_symmetric"])
# in * scale is integral here: for fractional sizes the ONNX reference (our semantics) and
# onnxruntime disagree on align_corners (float vs integer length_resized)
@pytest.mark.parametrize("scales", [(1, 1, 1.6, 0.6), (1, 1, 0.4, 2.0)])
def test_scales(mode, ctm, scales):
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    compare("Resize", {"x": X}, attrs, opset=19,
            consts={"roi": EMPTY, "scales": _scales(*scales)}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor",
                                          "ceil"])
def test_nearest_modes_sizes(nearest_mode):
    attrs = {"mode": "nearest", "nearest_mode": nearest_mode}
    compare("Resize", {"x": X}, attrs, opset=19,
            consts={"roi": EMPTY, "_none": EMPTY,
                    "sizes": np.array([1, 2, 8, 4], np.int64)})


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_antialias_downsample(mode):
    attrs = {"mode": mode, "antialias": 1}
    compare("Resize", {"x": X}, attrs, opset=19,
            consts={"roi": EMPTY, "scales": _scales(1, 1, 0.6, 0.45)}, rtol=1e-4, atol=1e-5)


def test_cubic_exclude_outside():
    attrs = {"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5}
    compare("Resize", {"x": X}, attrs, opset=19,
            consts={"roi": EMPTY, "scales": _scales(1, 1, 1.7, 0.8)}, rtol=1e-4, atol=1e-5)


def test_axes_and_keep_aspect_ratio():
    attrs = {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}
    compare("Resize", {"x": X}, attrs, opset=19,
            consts={"roi": EMPTY, "_none": EMPTY, "sizes": np.array([9, 9], np.int64)},
            rtol=1e-4, atol=1e-5)


def test_tf_crop_and_resize():
    attrs = {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
             "extrapolation_value": 3.5}
    roi = np.array([0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3], np.float32)
    compare("Resize", {"x": X}, attrs, opset=19,
            consts={"roi": roi, "_none": EMPTY, "sizes": np.array([1, 2, 4, 6], np.int64)},
            rtol=1e-4, atol=1e-5)


def test_uint8_linear():
    x = RNG.integers(0, 255, (1, 1, 4, 5)).astype(np.uint8)
    out = compare("Resize", {"x": x}, {"mode": "nearest"}, opset=19,
                  consts={"roi": EMPTY, "scales": _scales(1, 1, 2, 1.5)})
    assert out[0].dtype == np.uint8


def test_upsample_opset9():
    compare("Upsample", {"x": X}, {"mode": "nearest"}, opset=9,
            consts={"scales": _scales(1, 1, 2, 3)})


def test_both_scales_and_sizes_rejected():
    net = Network("n", opset=19)
    net.add_input("x", np.float32, X.shape)
    net.add_constant("roi", EMPTY)
    net.add_constant("scales", _scales(1, 1, 2, 2))
    net.add_constant("sizes", np.array([1, 2, 3, 3], np.int64))
    layer = net.add_layer("Resize", ["x", "roi", "scales", "sizes"], {}, name="rs",
                          infer=False)
    with pytest.raises(ShapeError, match="layer 'rs'.*exactly one of scales and sizes"):
        layer.op.run(layer, [X, EMPTY, _scales(1, 1, 2, 2), np.array([1, 2, 3, 3])],
                     RunContext())


def test_wrong_scale_count():
    net = Network("n", opset=19)
    net.add_input("x", np.float32, X.shape)
    net.add_constant("roi", EMPTY)
    net.add_constant("scales", _scales(2, 2))
    with pytest.raises(ShapeError, match="layer 'rs'.*scales has 2 values, expected 4"):
        net.add_layer("Resize", ["x", "roi", "scales"], {}, name="rs")

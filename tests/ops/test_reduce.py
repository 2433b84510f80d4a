"""Reductions, ArgMax/ArgMin, Softmax family, TopK and CumSum against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from _ort_util import compare

from dist_rt.errors import ShapeError
from dist_rt.network import Network

RNG = np.random.default_rng()
REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
          "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


def _x(shape=(3, 5, 7), dtype=np.float32, lo=0.2, hi=1.5):
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


class TestReduce:
    @pytest.mark.parametrize("keepdims", [0, 1])
    @pytest.mark.parametrize("op", REDUCE)
    def test_axes_input(self, op, keepdims):
        compare(op, {"x": _x()}, {"keepdims": keepdims},
                consts={"axes": np.array([0, -1], np.int64)}, rtol=1e-5)

    @pytest.mark.parametrize("op", REDUCE)
    def test_axes_attribute_old_opset(self, op):
        opset = 11
        compare(op, {"x": _x()}, {"axes": [1], "keepdims": 0}, opset=opset, rtol=1e-5)

    @pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMean"])
    def test_all_axes_and_noop(self, op):
        compare(op, {"x": _x()})
        compare(op, {"x": _x()}, {"noop_with_empty_axes": 1})

    def test_fp16_and_int(self):
        compare("ReduceSum", {"x": _x((4, 9), np.float16)}, rtol=2e-3, atol=1e-2)
        ints = RNG.integers(-9, 9, size=(4, 6)).astype(np.int32)
        compare("ReduceMax", {"x": ints}, consts={"axes": np.array([1], np.int64)})

    def test_symbolic_shape(self):
        net = Network("n")
        x = net.add_input("x", np.float32, ("b", 5, 7))
        axes = net.add_constant("axes", np.array([1], np.int64))
        layer = net.add_layer("ReduceSum", [x, axes], {"keepdims": 0}, name="r")
        assert layer.outputs[0].shape == ("b", 7)

    def test_bad_axis(self):
        net = Network("n")
        x = net.add_input("x", np.float32, (2, 3))
        axes = net.add_constant("axes", np.array([4], np.int64))
        with pytest.raises(ShapeError, match="'bad'"):
            net.add_layer("ReduceMean", [x, axes], {}, name="bad")


class TestArgTopK:
    @pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
    @pytest.mark.parametrize("last", [0, 1])
    def test_arg(self, op, last):
        x = RNG.integers(0, 3, size=(4, 7, 5)).astype(np.float32)  # many ties
        compare(op, {"x": x}, {"axis": 1, "keepdims": 0, "select_last_index": last})
        compare(op, {"x": x}, {"axis": -1, "select_last_index": last})

    @pytest.mark.parametrize("largest", [0, 1])
    def test_topk(self, largest):
        x = RNG.integers(0, 6, size=(3, 11)).astype(np.float32)
        compare("TopK", {"x": x}, {"largest": largest, "axis": 1}, n_outputs=2,
                consts={"k": np.array([4], np.int64)})

    def test_topk_k_too_big(self):
        net = Network("n")
        x = net.add_input("x", np.float32, (2, 3))
        k = net.add_constant("k", np.array([5], np.int64))
        with pytest.raises(ShapeError, match="at most 3"):
            net.add_layer("TopK", [x, k], {}, name="t", outputs=["v", "i"])


class TestSoftmaxCumSum:
    @pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
    @pytest.mark.parametrize("axis", [0, 1, -1])
    def test_softmax(self, op, axis):
        compare(op, {"x": _x(lo=-5, hi=5)}, {"axis": axis})

    @pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
    def test_old_opset_flattens(self, op):
        compare(op, {"x": _x(lo=-5, hi=5)}, {"axis": 1}, opset=11)

    def test_softmax_fp16(self):
        compare("Softmax", {"x": _x((4, 33), np.float16, -4, 4)}, rtol=1e-3, atol=1e-3)

    @pytest.mark.parametrize("exclusive", [0, 1])
    @pytest.mark.parametrize("reverse", [0, 1])
    def test_cumsum(self, exclusive, reverse):
        compare("CumSum", {"x": _x((3, 5), lo=-2, hi=2)},
                {"exclusive": exclusive, "reverse": reverse},
                consts={"axis": np.array(1, np.int64)})
        ints = RNG.integers(-9, 9, size=(6,)).astype(np.int32)
        compare("CumSum", {"x": ints}, {"exclusive": exclusive, "reverse": reverse},
                consts={"axis": np.array(0, np.int32)})

"""Shape/tensor-movement ops vs. onnxruntime on fresh random data (one-node models)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from node_harness import run_model_on_ops
from onnx import TensorProto, helper, numpy_helper

from dist_rt.errors import DistRtError, ShapeError

RNG = np.random.default_rng()
I64 = np.int64


def r(*shape, dtype=np.float32):
    """Fresh random data of ``shape``."""
    return RNG.standard_normal(shape).astype(dtype)


def c(values, dtype=I64):
    """A constant input (becomes an initializer)."""
    return ("const", np.asarray(values, dtype=dtype))


def one_node(op, inputs, attrs=None, outputs=1, opset=21, out_types=None):
    """A one-node ModelProto; ``inputs`` are arrays (fed), ``c(...)`` (initializers) or None."""
    names, graph_inputs, inits, feeds = [], [], [], []
    for i, x in enumerate(inputs):
        if x is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if isinstance(x, tuple):
            inits.append(numpy_helper.from_array(x[1], name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape))
            feeds.append(x)
    out_names = [f"out{i}" for i in range(outputs)]
    first = next(x for x in inputs if x is not None)
    first = first[1] if isinstance(first, tuple) else first
    out_types = out_types or [helper.np_dtype_to_tensor_dtype(first.dtype)] * outputs
    node = helper.make_node(op, names, out_names, **(attrs or {}))
    graph = helper.make_graph([node], "g", graph_inputs,
                              [helper.make_tensor_value_info(n, t, None)
                               for n, t in zip(out_names, out_types, strict=True)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model, feeds


def check(op, inputs, attrs=None, outputs=1, opset=21, out_types=None):
    """Run through onnxruntime and through a Network; compare every output exactly."""
    model, feeds = one_node(op, inputs, attrs, outputs, opset, out_types)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {i.name: f for i, f in zip(model.graph.input, feeds, strict=True)})
    got = run_model_on_ops(model, feeds)
    for g, e in zip(got, expected, strict=True):
        g = np.asarray(g)
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
        if e.dtype.kind == "f":
            # Range: onnxruntime accumulates ``x += delta``, the spec says ``start + i*delta``.
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(g, e)


B = TensorProto.BOOL
L = TensorProto.INT64


class TestMovement:
    @pytest.mark.parametrize("shape,target,allowzero", [
        ((3, 5, 7), [0, -1], 0), ((3, 5, 7), [7, 15], 0), ((2, 0, 3), [0, 3, 0], 1),
        ((4, 6), [2, -1, 3], 0), ((1, 5), [-1], 0),
    ])
    def test_reshape(self, shape, target, allowzero):
        check("Reshape", [r(*shape), c(target)], {"allowzero": allowzero})

    @pytest.mark.parametrize("perm", [None, [1, 0, 2], [2, 0, 1]])
    def test_transpose(self, perm):
        check("Transpose", [r(3, 5, 7)], {} if perm is None else {"perm": perm})

    def test_squeeze_unsqueeze(self):
        check("Squeeze", [r(1, 5, 1, 3), c([0, -2])])
        check("Squeeze", [r(1, 5, 1, 3)])
        check("Squeeze", [r(1, 5, 1, 3)], {"axes": [2]}, opset=11)
        check("Unsqueeze", [r(5, 3), c([0, -1, 2])])
        check("Unsqueeze", [r(5, 3)], {"axes": [1]}, opset=11)

    @pytest.mark.parametrize("axis", [0, 1, -1, 3])
    def test_flatten(self, axis):
        check("Flatten", [r(2, 3, 5)] if axis != 3 else [r(2, 3, 5)], {"axis": axis})

    def test_concat_uneven(self):
        check("Concat", [r(2, 3, 5), r(2, 1, 5), r(2, 7, 5)], {"axis": 1})
        check("Concat", [r(4, 3), r(1, 3)], {"axis": -2})

    def test_split(self):
        check("Split", [r(7, 5)], {"axis": 0, "num_outputs": 3}, outputs=3)
        check("Split", [r(3, 10), c([2, 3, 5])], {"axis": 1}, outputs=3)
        check("Split", [r(6, 4)], {"axis": 0}, outputs=2, opset=13)
        check("Split", [r(7, 4)], {"axis": 0, "split": [3, 4]}, outputs=2, opset=11)

    @pytest.mark.parametrize("starts,ends,axes,steps", [
        ([1, 0], [4, 10], [0, 1], [1, 2]), ([-1], [-100], [1], [-1]), ([10], [-10], [0], [-3]),
        ([0], [2 ** 62], [-1], None), ([2, 2], [1, 2], None, None), ([-5], [-1], [0], [2]),
    ])
    def test_slice(self, starts, ends, axes, steps):
        ins = [r(7, 9), c(starts), c(ends), None if axes is None else c(axes),
               None if steps is None else c(steps)]
        while ins[-1] is None:
            ins.pop()
        check("Slice", ins)

    def test_slice_runtime_inputs(self):
        check("Slice", [r(6, 5), np.array([1, -2], I64), np.array([5, 0], I64),
                        np.array([0, 1], I64), np.array([2, -1], I64)])

    def test_expand_tile(self):
        check("Expand", [r(3, 1), c([2, 1, 5])])
        check("Expand", [r(1, 4), c([3, 1])])
        check("Tile", [r(2, 3), c([3, 2])])

    @pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
    def test_pad(self, mode):
        check("Pad", [r(4, 5), c([1, 2, 3, 1])], {"mode": mode})
        check("Pad", [r(3, 5, 4), c([2, -1]), c(np.float32(1.5), np.float32), c([1])],
              {"mode": mode} if mode == "constant" else {"mode": "constant"})
        check("Pad", [r(3, 6), c([0, -2, 1, -1])], {"mode": mode})

    def test_depth_space(self):
        for mode in ("DCR", "CRD"):
            check("DepthToSpace", [r(2, 12, 3, 5)], {"blocksize": 2, "mode": mode})
        check("SpaceToDepth", [r(2, 3, 6, 4)], {"blocksize": 2})

    def test_center_crop_pad(self):
        check("CenterCropPad", [r(5, 8, 3), c([7, 5])], {"axes": [0, 1]})
        check("CenterCropPad", [r(4, 5), c([3, 8])])


class TestIndexing:
    def test_gather(self):
        check("Gather", [r(7, 5), np.array([[0, -1], [3, 6]], I64)], {"axis": 0})
        check("Gather", [r(3, 7, 2), np.array(-2, I64)], {"axis": 1})
        check("GatherElements", [r(4, 5), RNG.integers(-5, 5, (4, 3))], {"axis": 1})

    def test_gather_nd(self):
        check("GatherND", [r(3, 4, 5), RNG.integers(0, 3, (2, 2)).astype(I64)])
        check("GatherND", [r(3, 4, 5), RNG.integers(0, 4, (3, 2, 1)).astype(I64)],
              {"batch_dims": 1})

    @pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
    def test_scatter(self, reduction):
        data = r(5, 4)
        idx = np.array([[0, 2, 1, 0], [4, 4, 3, -1]], I64)
        check("ScatterElements", [data, idx, r(2, 4)], {"axis": 0, "reduction": reduction})
        nd = np.array([[1], [3], [1]], I64) if reduction != "none" else np.array([[1], [3]], I64)
        check("ScatterND", [data, nd, r(len(nd), 4)], {"reduction": reduction})

    def test_one_hot_nonzero_compress(self):
        check("OneHot", [np.array([[1, -1], [5, 0]], I64), c(4), c([0.0, 2.0], np.float32)],
              {"axis": 1}, out_types=[TensorProto.FLOAT])
        check("NonZero", [RNG.integers(0, 2, (3, 4)).astype(np.float32)], out_types=[L])
        check("Compress", [r(4, 3), np.array([True, False, True])], {"axis": 0})
        check("Compress", [r(4, 3), np.array([False, True, True, False, True])])

    def test_unique(self):
        x = RNG.integers(0, 4, 11).astype(np.float32)
        for s in (0, 1):
            check("Unique", [x], {"sorted": s}, outputs=4, out_types=[1, L, L, L])

    def test_misc(self):
        check("Trilu", [r(2, 4, 5), c(1)], {"upper": 0})
        check("Trilu", [r(4, 5)])
        check("EyeLike", [r(3, 5)], {"k": 1, "dtype": TensorProto.INT32},
              out_types=[TensorProto.INT32])
        check("ReverseSequence", [r(5, 3, 2), np.array([5, 0, 3], I64)],
              {"batch_axis": 1, "time_axis": 0})
        check("Range", [c(np.float32(1.5), np.float32), c(np.float32(-3), np.float32),
                        c(np.float32(-0.7), np.float32)])
        check("ConstantOfShape", [c([2, 3])], {"value": numpy_helper.from_array(
            np.array([7], np.int32))}, out_types=[TensorProto.INT32])
        check("Shape", [r(2, 3, 5, 7)], {"start": 1, "end": -1}, out_types=[L])
        check("Size", [r(2, 3, 5)], out_types=[L])
        check("Identity", [r(3, 4)])
        check("Dropout", [r(3, 4)], outputs=2, out_types=[1, B])


class TestBadInput:
    def test_reshape_incompatible(self):
        model, feeds = one_node("Reshape", [r(3, 5), c([4, 4])])
        with pytest.raises(ShapeError, match=r"layer 'n0' \(Reshape\).*\(3, 5\).*\(4, 4\)"):
            run_model_on_ops(model, feeds)

    def test_concat_mismatch(self):
        model, feeds = one_node("Concat", [r(3, 5), r(4, 6)], {"axis": 0})
        with pytest.raises(ShapeError, match="input 1 has shape"):
            run_model_on_ops(model, feeds)

    def test_split_bad_sizes(self):
        model, feeds = one_node("Split", [r(7, 2), c([3, 3])], {"axis": 0}, outputs=2)
        with pytest.raises(ShapeError, match="sums to 6, expected the axis size 7"):
            run_model_on_ops(model, feeds)

    def test_gather_out_of_range(self):
        model, feeds = one_node("Gather", [r(3, 5), np.array([3], I64)])
        with pytest.raises(DistRtError, match="out of bounds"):
            run_model_on_ops(model, feeds)

    def test_squeeze_non_one(self):
        model, feeds = one_node("Squeeze", [r(3, 5), c([0])])
        with pytest.raises(ShapeError, match="size is 3, expected 1"):
            run_model_on_ops(model, feeds)

    def test_slice_zero_step(self):
        model, feeds = one_node("Slice", [r(3, 5), c([0]), c([2]), c([0]), c([0])])
        with pytest.raises(ShapeError, match="must not contain 0"):
            run_model_on_ops(model, feeds)

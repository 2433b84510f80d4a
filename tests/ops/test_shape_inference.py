"""Build-time shape inference of the shape ops: symbolic dims and exporter shape chains."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt.errors import ShapeError
from dist_rt.network import Network

I64 = np.int64


def const(net, values):
    return net.add_constant(net.unique_name("c"), np.asarray(values, I64))


def layer(net, op, inputs, **attrs):
    return net.add_layer(op, inputs, attrs).outputs[0]


def head_split_chain(net, x, heads, head_dim):
    """GPT-2/Llama style: Shape -> Gather -> Unsqueeze -> Concat -> Reshape to 4-D heads."""
    shape = layer(net, "Shape", [x])
    dims = []
    for i in (0, 1):
        d = layer(net, "Gather", [shape, const(net, i)], axis=0)
        dims.append(layer(net, "Unsqueeze", [d, const(net, [0])]))
    target = layer(net, "Concat", dims + [const(net, [heads, head_dim])], axis=0)
    y = layer(net, "Reshape", [x, target])
    return layer(net, "Transpose", [y], perm=[0, 2, 1, 3])


class TestReshape:
    def test_symbolic_copy_and_constant(self):
        net = Network()
        x = net.add_input("x", np.float32, ("batch", "seq", 256))
        y = net.add_reshape(x, [0, 0, 8, 32])
        assert y.shape == ("batch", "seq", 8, 32)

    def test_symbolic_minus_one(self):
        net = Network()
        x = net.add_input("x", np.float32, ("batch", "seq", 256))
        assert net.add_reshape(x, [0, 0, -1, 32]).shape == ("batch", "seq", 8, 32)
        assert net.add_reshape(x, [-1, 256]).shape == (None, 256)
        flat = net.add_reshape(x, [0, -1])
        assert flat.shape == ("batch", None)

    def test_minus_one_cancels_symbols(self):
        net = Network()
        x = net.add_input("x", np.float32, ("batch", 12, "seq", 64))
        assert net.add_reshape(x, [0, -1, 768]).shape == ("batch", "seq", 768)
        net2 = Network()
        x2 = net2.add_input("x", np.float32, ("batch", "seq", 768))
        shape = layer(net2, "Shape", [x2], end=2)
        target = layer(net2, "Concat", [shape, const(net2, [-1, 64])], axis=0)
        assert layer(net2, "Reshape", [x2, target]).shape == ("batch", "seq", 12, 64)

    def test_incompatible_names_layer_and_shapes(self):
        net = Network()
        x = net.add_input("x", np.float32, (3, 5))
        with pytest.raises(ShapeError, match=r"layer 'reshape.*\(3, 5\).*\(4, 4\)"):
            net.add_reshape(x, [4, 4])
        with pytest.raises(ShapeError, match="not a multiple of"):
            net.add_reshape(x, [4, -1])
        with pytest.raises(ShapeError, match="more than one -1"):
            net.add_reshape(x, [-1, -1])


class TestExporterChains:
    def test_static_chain_is_fully_static_and_folds(self):
        net = Network()
        x = net.add_input("x", np.float32, (2, 7, 96))
        y = head_split_chain(net, x, 4, 24)
        net.mark_output(y)
        known = net.infer_shapes()
        assert y.shape == (2, 4, 7, 24)
        concat = [t for t in net.tensors.values() if t.producer is not None
                  and t.producer.op_type == "Concat"][0]
        np.testing.assert_array_equal(known[concat.name], [2, 7, 4, 24])

    def test_symbolic_chain_keeps_symbols(self):
        net = Network()
        x = net.add_input("x", np.float32, ("batch", "seq", 96))
        y = head_split_chain(net, x, 4, 24)
        net.mark_output(y)
        net.infer_shapes()
        assert y.shape == ("batch", 4, "seq", 24)
        merged = layer(net, "Reshape", [layer(net, "Transpose", [y], perm=[0, 2, 1, 3]),
                                        const(net, [0, 0, -1])])
        assert merged.shape == ("batch", "seq", 96)

    def test_slice_of_shape_and_expand(self):
        net = Network()
        x = net.add_input("x", np.float32, ("batch", "seq", 64))
        shape = layer(net, "Shape", [x])
        lead = layer(net, "Slice", [shape, const(net, [0]), const(net, [-1])])
        assert lead.shape == (2,)
        target = layer(net, "Concat", [lead, const(net, [4, 16])], axis=0)
        assert layer(net, "Reshape", [x, target]).shape == ("batch", "seq", 4, 16)
        mask = net.add_input("m", np.float32, (1, 1, 64))
        assert layer(net, "Expand", [mask, shape]).shape == ("batch", "seq", 64)
        ones = layer(net, "ConstantOfShape", [shape])
        assert ones.shape == ("batch", "seq", 64)

    def test_position_ids_range(self):
        net = Network()
        x = net.add_input("x", np.int64, ("batch", "seq"))
        seq = layer(net, "Gather", [layer(net, "Shape", [x]), const(net, 1)], axis=0)
        assert seq.shape == ()
        pos = layer(net, "Range", [const(net, 0), seq, const(net, 1)])
        assert pos.shape == ("seq",)
        assert layer(net, "Unsqueeze", [pos, const(net, [0])]).shape == (1, "seq")

    def test_static_values_propagate_without_infer_shapes(self):
        net = Network()
        x = net.add_input("x", np.float32, (3, 10))
        size = layer(net, "Size", [x])
        shape = layer(net, "Shape", [x], start=-1)
        tiled = layer(net, "Tile", [net.add_input("t", np.float32, (2,)), shape])
        assert size.shape == () and tiled.shape == (20,)


class TestOtherInference:
    def test_shapes_of_movement_ops(self):
        net = Network()
        x = net.add_input("x", np.float32, ("b", 1, 6, "s"))
        assert layer(net, "Squeeze", [x, const(net, [1])]).shape == ("b", 6, "s")
        assert layer(net, "Squeeze", [x]).shape is None  # a symbolic dim might be 1
        assert layer(net, "Flatten", [x], axis=2).shape == ("b", None)
        assert layer(net, "Transpose", [x]).shape == ("s", 6, 1, "b")
        parts = net.add_layer("Split", [x], {"axis": 2, "num_outputs": 4}, outputs=4).outputs
        assert [p.shape[2] for p in parts] == [2, 2, 2, 0]
        sl = layer(net, "Slice", [x, const(net, [1, 0]), const(net, [-1, 2 ** 62]),
                                  const(net, [2, 3])])
        assert sl.shape == ("b", 1, 4, "s")
        assert layer(net, "Pad", [x, const(net, [0, 0, 1, 0, 0, 0, 2, 0])]).shape == \
            ("b", 1, 9, "s")
        assert layer(net, "Concat", [x, x], axis=2).shape == ("b", 1, 12, "s")
        assert layer(net, "NonZero", [x]).shape == (4, None)
        idx = net.add_input("i", np.int64, ("n", 2))
        assert layer(net, "GatherND", [x, idx]).shape == ("n", 6, "s")

    def test_bad_inference_inputs(self):
        net = Network()
        x = net.add_input("x", np.float32, (4, 6))
        with pytest.raises(ShapeError, match="axis size 6 does not split evenly"):
            net.add_layer("Split", [x], {"axis": 1}, outputs=4)
        with pytest.raises(ShapeError, match="out of range"):
            layer(net, "Concat", [x, x], axis=2)
        with pytest.raises(ShapeError, match="not a permutation"):
            layer(net, "Transpose", [x], perm=[0, 0])
        with pytest.raises(ShapeError, match="must be 4-D"):
            layer(net, "DepthToSpace", [x], blocksize=2)

"""Network.copy: a deep structural copy that shares the weights."""

from __future__ import annotations

import copy

import numpy as np

from dist_rt.network import Network, Tensor


def _network() -> Network:
    net = Network("mlp")
    x = net.add_input("x", np.float32, ("batch", 4))
    w = net.add_constant("w", np.arange(12, dtype=np.float32).reshape(4, 3))
    y = net.add_activation(net.add_matmul(x, w), "Relu")
    net.mark_output(net.add_softmax(y, axis=-1))
    shared = {"list": [1, 2]}
    net.layers[0].metadata["note"] = shared
    net.layers[1].metadata["same"] = shared     # one object in two places
    net.layers[1].metadata["layer"] = net.layers[0]  # a reference to a layer of the graph
    net.metadata.update(rank=0, world_size=1, notes=[np.arange(3)])
    return net


class TestCopy:
    def test_same_graph(self):
        net = _network()
        clone = net.copy()
        assert str(clone) == str(net)
        assert [lay.name for lay in clone.layers] == [lay.name for lay in net.layers]
        assert clone.opsets == net.opsets and clone._next_id == net._next_id
        clone.validate()

    def test_weights_shared_everything_else_new(self):
        net = _network()
        clone = net.copy()
        assert clone.tensors["w"].weights is net.tensors["w"].weights
        for name, t in net.tensors.items():
            assert clone.tensors[name] is not t
        for a, b in zip(net.layers, clone.layers, strict=True):
            assert a is not b and a.attributes is not b.attributes
            assert a.metadata is not b.metadata

    def test_links_point_into_the_copy(self):
        net = _network()
        clone = net.copy()
        ids = {id(t) for t in clone.tensors.values()} | {id(lay) for lay in clone.layers}
        for layer in clone.layers:
            assert all(id(t) in ids for t in layer.inputs + layer.outputs if t is not None)
            assert all(t.producer is layer for t in layer.outputs)
        assert all(id(t) in ids for t in clone.inputs + clone.outputs)
        assert clone.layers[1].metadata["layer"] is clone.layers[0]
        assert clone.layers[0].metadata["note"] is clone.layers[1].metadata["same"]

    def test_edits_do_not_leak(self):
        net = _network()
        before = str(net)
        clone = net.copy()
        clone.layers[0].metadata["note"]["list"].append(3)
        clone.layers[-1].attributes["axis"] = 0
        clone.tensors["x"].shape = ("batch", 5)
        clone.metadata["notes"][0][0] = 7
        clone.add_constant("extra", np.ones(2))
        assert str(net) == before
        assert net.layers[0].metadata["note"]["list"] == [1, 2]
        assert net.metadata["notes"][0][0] == 0
        assert "extra" not in net.tensors

    def test_matches_deepcopy(self):
        net = _network()
        memo = {id(net.tensors["w"].weights): net.tensors["w"].weights}
        deep = copy.deepcopy(net, memo)
        clone = net.copy()
        assert str(clone) == str(deep)
        assert sorted(vars(clone)) == sorted(vars(deep))

    def test_subclass_slots_are_copied(self):
        class Tagged(Tensor):
            __slots__ = ("tag",)

        net = _network()
        t = Tagged("tagged", np.float32, (1,), None)
        t.tag = ["a"]
        net.tensors["tagged"] = t
        clone = net.copy()
        got = clone.tensors["tagged"]
        assert type(got) is Tagged and got.tag == ["a"] and got.tag is not t.tag
        assert got.name == "tagged" and got.kind == "tensor"

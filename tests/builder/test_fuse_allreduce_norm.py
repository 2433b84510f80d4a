"""fuse_allreduce_norm: DistCollective(all_reduce, sum) -> AddRMSNorm becomes one layer.

The pass fires only for CUDA builds; these CPU tests call it with a CUDA ``BuildState`` or
patch ``fuse_allreduce_norm.on_cuda`` so a CPU build runs the fused layer's reference (the
communicator's all-reduce, then AddRMSNorm). Every rank of a Megatron plan runs in one
process (``tests/sharding/simulate.py``: threads and an in-memory communicator).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from nets import run_network
from simulate import run_ranks

import sharding
from dist_rt import Builder, BuilderConfig, parse_onnx
from dist_rt.builder.passes import BuildState, fuse_allreduce_norm
from dist_rt.models import LlamaConfig, llama_inputs, make_llama
from dist_rt.network import Network

COST = sharding.CostModel(alpha=1e-5, link_bandwidth=1e9, peak_flops=1e9,
                          memory_bandwidth=1e9, name="test")


@pytest.fixture
def fuse_on_cpu(monkeypatch):
    monkeypatch.setattr(fuse_allreduce_norm, "on_cuda", lambda state: True)


def _llama(layers: int = 2) -> Network:
    return parse_onnx(make_llama(LlamaConfig(vocab=128, hidden=64, heads=8, kv_heads=4,
                                             mlp=128, layers=layers, max_seq=32)))


def _ops(net: Network) -> Counter:
    return Counter(lay.op_type for lay in net.layers)


def _build(net: Network, level: int = 2):
    return Builder(BuilderConfig(device="cpu", optimization_level=level)).build(net)


class TestMegatronBlocks:
    @pytest.mark.parametrize("n", [2, 4])
    def test_every_pair_fused(self, monkeypatch, n):
        plan = sharding.plan(_llama(), n, cost_model=COST)
        unfused = _build(plan.partition(n - 1)).network
        users = unfused.consumers()
        pairs = sum(1 for lay in unfused.layers if lay.op_type == "DistCollective"
                    and [u.op_type for u in users.get(lay.outputs[0].name, [])] == ["AddRMSNorm"])
        # 2 a block, less the last block's MLP all-reduce when the plan keeps the final
        # residual Add and norm apart.
        assert pairs >= 3, unfused.layers
        monkeypatch.setattr(fuse_allreduce_norm, "on_cuda", lambda state: True)
        engine = _build(plan.partition(n - 1))
        assert _ops(engine.network)["AllReduceAddRMSNorm"] == pairs
        assert engine.build_notes["fuse_allreduce_norm"] == \
            f"{pairs} all-reduce+AddRMSNorm pairs fused"
        for lay in engine.network.layers:
            if lay.op_type == "AllReduceAddRMSNorm":
                assert lay.nb_ranks == n and "axis" not in lay.attributes
                assert ".all_reduce" in lay.metadata["fused_from"][0]

    @pytest.mark.parametrize("n", [1, 2, 3, 4])
    def test_matches_unfused(self, monkeypatch, n):
        """Every rank's logits equal the unfused engine's (same summation: fp32, CPU)."""
        feeds = llama_inputs(None, 2, 7)
        feeds["input_ids"] %= 128
        plan = sharding.plan(_llama(), n, cost_model=COST)

        def runner(local, f, rt):
            return run_network(_build(local).network, f, rt)

        want = run_ranks(plan, feeds, runner)
        monkeypatch.setattr(fuse_allreduce_norm, "on_cuda", lambda state: True)
        got = run_ranks(plan, feeds, runner)
        for w, g in zip(want, got, strict=True):
            for k in w:
                np.testing.assert_allclose(g[k], w[k], rtol=1e-5, atol=1e-5)

    def test_not_on_cpu(self):
        plan = sharding.plan(_llama(), 2, cost_model=COST)
        engine = _build(plan.partition(0))
        assert _ops(engine.network)["AllReduceAddRMSNorm"] == 0
        assert engine.build_notes["fuse_allreduce_norm"] == "off: not a CUDA build"

    def test_not_below_level_2(self, fuse_on_cpu):
        plan = sharding.plan(_llama(), 2, cost_model=COST)
        engine = _build(plan.partition(0), level=1)
        assert _ops(engine.network)["AllReduceAddRMSNorm"] == 0


def _pattern(op: str = "all_reduce", reduce_op: str = "sum", extra_reader: bool = False,
             residual_shape=(3, 16)) -> Network:
    """x -> DistCollective -> AddRMSNorm(A, residual, w) on 2 ranks."""
    net = Network("pattern")
    x = net.add_input("x", np.float32, (3, 16))
    r = net.add_input("r", np.float32, residual_shape)
    w = net.add_constant("w", np.linspace(0.5, 1.5, 16, dtype=np.float32))
    a = net.add_layer("DistCollective", [x], {"collective_operation": op,
                                              "reduce_op": reduce_op, "group": []},
                      name="ar", outputs=["a"])
    a.nb_ranks = 2
    norm = net.add_layer("AddRMSNorm", [r, a.outputs[0], w], {"epsilon": 1e-6},
                         domain="dist_rt", name="norm", outputs=["s", "y"])
    net.opsets.setdefault("dist_rt", 1)
    net.mark_output(norm.outputs[1])
    net.mark_output(norm.outputs[0])
    if extra_reader:
        net.mark_output(a.outputs[0])
    return net


class TestPattern:
    def test_fuses_either_operand_and_keeps_names(self):
        net = _pattern()
        note = fuse_allreduce_norm.run(net, BuildState(BuilderConfig(device="cuda")))
        assert note == "1 all-reduce+AddRMSNorm pairs fused"
        (layer,) = net.layers
        assert layer.op_type == "AllReduceAddRMSNorm" and layer.domain == "dist_rt"
        assert [t.name for t in layer.inputs] == ["x", "r", "w"]
        assert [t.name for t in layer.outputs] == ["s", "y"]
        assert layer.attributes["epsilon"] == pytest.approx(1e-6) and layer.nb_ranks == 2

    @pytest.mark.parametrize("kw", [{"reduce_op": "max"}, {"op": "all_gather"},
                                    {"extra_reader": True}, {"residual_shape": (1, 16)}],
                             ids=["max", "all_gather", "read_twice", "broadcast_residual"])
    def test_left_alone(self, kw):
        net = _pattern(**kw)
        before = _ops(net)
        note = fuse_allreduce_norm.run(net, BuildState(BuilderConfig(device="cuda")))
        assert note == "0 all-reduce+AddRMSNorm pairs fused" and _ops(net) == before

    def test_two_ranks_match_the_pair(self):
        """The fused layer on 2 threads equals DistCollective then AddRMSNorm."""
        rng = np.random.default_rng(5)
        feeds = [{"x": rng.standard_normal((3, 16)).astype(np.float32),
                  "r": rng.standard_normal((3, 16)).astype(np.float32)} for _ in range(2)]
        unfused, fused = _pattern(), _pattern()
        fuse_allreduce_norm.run(fused, BuildState(BuilderConfig(device="cuda")))

        class Plan:  # what run_ranks needs: the world size and each rank's network
            world_size = 2

            def __init__(self, net):
                self.net = net

            def partition(self, r):
                return self.net

        for net in (unfused, fused):
            outs = run_ranks(Plan(net), {}, lambda n, f, rt: run_network(n, feeds[rt.rank], rt))
            if net is unfused:
                want = outs
        total = feeds[0]["x"] + feeds[1]["x"]
        for r in range(2):
            s = feeds[r]["r"] + total
            y = s / np.sqrt((s * s).mean(-1, keepdims=True) + 1e-6) * np.linspace(0.5, 1.5, 16)
            np.testing.assert_allclose(outs[r]["s"], s, rtol=1e-6)
            np.testing.assert_allclose(outs[r]["y"], y, rtol=1e-5, atol=1e-6)
            for k in ("s", "y"):
                np.testing.assert_array_equal(outs[r][k], want[r][k])

"""Plan structure: Megatron pattern, weight bytes, hints, errors; placements and dim maps."""

import os
import sys
from collections import Counter

import numpy as np
import pytest

import sharding
from dist_rt.errors import PlanFileError, ShardingError
from sharding.placement import P, R, Shard, parse_placement
from sharding.rules.layout import dim_map

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_worker import TEST_COST  # noqa: E402
from nets import transformer  # noqa: E402


class TestPlacement:
    def test_repr_and_str(self):
        assert repr(Shard(0)) == "Shard(dim=0)" and str(Shard(0)) == "S(0)"
        assert str(R) == "R" and str(P) == "P"

    @pytest.mark.parametrize("text,want", [("S(1)", Shard(1)), ("Shard(dim=2)", Shard(2)),
                                           ("R", R), ("Replicate()", R), ("P", P)])
    def test_parse(self, text, want):
        assert parse_placement(text) == want

    def test_parse_bad(self):
        with pytest.raises(PlanFileError, match="not a placement"):
            parse_placement("X(1)")


class TestDimMap:
    def test_head_split(self):
        assert dim_map(("b", "s", 256), ("b", "s", 8, 32)) == {0: 0, 1: 1, 2: 2}

    def test_head_merge_gqa(self):
        assert dim_map(("b", 2, 3, "s", 16), ("b", 6, "s", 16)) == {0: 0, 1: 1, 3: 2, 4: 3}


#: The hand-built transformer's tables are small: cheaper collectives make its vocab-parallel
#: embedding pay (the zoo Llama below uses TEST_COST).
HAND_COST = sharding.CostModel(alpha=1e-6, link_bandwidth=1e9, peak_flops=1e9,
                               memory_bandwidth=1e9, name="hand")


class TestMegatron:
    @pytest.mark.parametrize("n", [2, 4])
    def test_two_all_reduces_per_layer(self, n):
        layers = 3
        net = transformer(layers=layers)
        plan = sharding.plan(net, n, cost_model=HAND_COST)
        counts = plan.collective_counts()
        assert counts.get("all_reduce", 0) == 2 * layers, plan.summary()
        # embedding + head only: at most 2 other collectives
        assert sum(counts.values()) - counts["all_reduce"] <= 2, plan.summary()
        norms = sum(t.weights.nbytes for t in net.constants if ".ln" in t.name)
        assert plan.weight_bytes_per_rank() <= 1.05 * net.weight_bytes() / n + norms

    def test_uneven_heads_not_split(self):
        net = transformer(hidden=60, heads=5, mlp=100, vocab=66)
        plan = sharding.plan(net, 4, cost_model=TEST_COST)
        for layer in net.layers:
            if layer.op_type == "Reshape" and len(layer.outputs[0].shape) == 4:
                assert not plan.strategies[layer.name].outputs[0].is_shard()

    def test_plan_hash_deterministic(self):
        a = sharding.plan(transformer(), 2, cost_model=TEST_COST)
        b = sharding.plan(transformer(), 2, cost_model=TEST_COST)
        assert a.plan_hash == b.plan_hash
        assert a.partition(1).metadata == {"rank": 1, "world_size": 2,
                                           "plan_hash": a.plan_hash}


class TestHints:
    def test_replicate(self):
        plan = sharding.plan(transformer(), 4, hints="replicate", cost_model=TEST_COST)
        assert plan.collective_counts() == {}

    def test_pin_tensor_and_layers(self, tmp_path):
        path = tmp_path / "plan.json"
        path.write_text('{"tensors": {"embed": "S(1)"}, "layers": {"matmul_2*": "replicate"}}')
        net = transformer()
        plan = sharding.plan(net, 2, hints=str(path), cost_model=TEST_COST)
        assert plan.placements["embed"] == (Shard(1),)

    @pytest.mark.parametrize("hints,err", [({"tensors": {"nope": "R"}}, PlanFileError),
                                           ({"layers": {"zzz*": "row"}}, PlanFileError),
                                           ({"bogus": 1}, PlanFileError),
                                           ({"tensors": {"embed": "S(7)"}}, ShardingError)])
    def test_bad_hints(self, hints, err):
        with pytest.raises(err):
            sharding.plan(transformer(), 2, hints=hints, cost_model=TEST_COST)


def test_bad_world_size_and_rank():
    with pytest.raises(ShardingError, match="world_size"):
        sharding.plan(transformer(), 0)
    plan = sharding.plan(transformer(), 2, cost_model=TEST_COST)
    with pytest.raises(ShardingError, match="rank 2"):
        plan.partition(2)


def test_memory_limit_forces_sharding_or_fails():
    net = transformer()
    total = net.weight_bytes()
    plan = sharding.plan(net, 4, memory_limit=total * 0.4)  # default (nvlink) model
    assert plan.weight_bytes_per_rank() <= total * 0.4
    with pytest.raises(ShardingError, match="memory limit"):
        sharding.plan(transformer(), 4, memory_limit=1000)
    assert np.isfinite(total)


def test_explain_table_and_svg(tmp_path):
    plan = sharding.plan(transformer(), 2, cost_model=TEST_COST)
    svg = tmp_path / "p.svg"
    text = sharding.explain(plan, str(svg))
    assert "all_reduce" in text and "per-rank weight memory" in text
    assert svg.read_text().startswith("<svg") and "#ffb3b3" in svg.read_text()


def _llama(**over):
    from dist_rt import parse_onnx
    from dist_rt.models import LlamaConfig, make_llama

    cfg = dict(vocab=128, hidden=64, heads=8, kv_heads=4, mlp=128, layers=2, max_seq=32)
    cfg.update(over)
    return parse_onnx(make_llama(LlamaConfig(**cfg)))


def _collectives_by_layer(plan, op):
    """Counts of ``op`` DistCollectives per decoder layer index, and outside the layers."""
    import re

    per, other = Counter(), 0
    for lay in plan.partition(0).layers:
        if lay.op_type != "DistCollective" or lay.attr("collective_operation") != op:
            continue
        m = re.search(r"layers\.(\d+)/", lay.name)
        if m:
            per[int(m.group(1))] += 1
        else:
            other += 1
    return per, other


class TestLlamaZoo:
    @pytest.mark.parametrize("n", [2, 4])
    def test_megatron_plan(self, n):
        net = _llama()
        plan = sharding.plan(net, n, cost_model=TEST_COST)
        per, other = _collectives_by_layer(plan, "all_reduce")
        assert dict(per) == {0: 2, 1: 2}, plan.summary()
        counts = plan.collective_counts()
        assert sum(counts.values()) - 4 <= 2, plan.summary()  # embedding + head
        norms = sum(t.weights.nbytes for t in net.constants if "norm" in t.name)
        assert plan.weight_bytes_per_rank() <= 1.05 * net.weight_bytes() / n + norms
        for layer in net.layers:
            if layer.name.endswith(("q_proj/MatMul", "k_proj/MatMul", "gate_proj/MatMul")):
                assert plan.strategies[layer.name].name == "column", layer.name
            if layer.name.endswith(("o_proj/MatMul", "down_proj/MatMul")):
                assert plan.strategies[layer.name].name == "row", layer.name

    @pytest.mark.parametrize("device,sharded", [("cpu", True), ("cuda", False)])
    def test_default_model_device_cost(self, device, sharded):
        """The CLI's default model shards on CPU ranks, stays replicated on NVLink GPUs."""
        from dist_rt import parse_onnx
        from dist_rt.models import default_model

        plan = sharding.plan(parse_onnx(default_model()), 4, device=device,
                             input_shapes={"input_ids": (1, 16)})
        per, _ = _collectives_by_layer(plan, "all_reduce")
        assert dict(per) == ({0: 2, 1: 2} if sharded else {}), plan.summary()

    def test_32_layers_plan_time(self):
        import time

        net = _llama(layers=32)
        t0 = time.perf_counter()
        plan = sharding.plan(net, 4, cost_model=TEST_COST)
        dt = time.perf_counter() - t0
        print(f"32-layer Llama ({len(net.layers)} layers), N=4: planned in {dt:.1f} s")
        per, _ = _collectives_by_layer(plan, "all_reduce")
        assert len(per) == 32 and set(per.values()) == {2}
        assert dt < 30

    def test_uneven_heads_replicate_attention(self):
        net = _llama(hidden=48, heads=6, kv_heads=3, mlp=100, vocab=130, layers=1)
        plan = sharding.plan(net, 4, cost_model=TEST_COST)
        assert plan.strategies["/model/layers.0/self_attn/q_proj/MatMul"].is_replicated
        assert plan.strategies["/model/layers.0/mlp/down_proj/MatMul"].name == "row"


def test_moe_expert_parallel():
    from dist_rt import parse_onnx
    from dist_rt.models import MoEConfig, make_moe

    net = parse_onnx(make_moe(MoEConfig()))
    plan = sharding.plan(net, 2, cost_model=TEST_COST)
    stacked = [t for t in net.constants if t.shape is not None and len(t.shape) == 3]
    assert stacked and all(plan.placements[t.name] == (Shard(0),) for t in stacked)


def test_export_round_trip():
    """export_onnx(partition(r)) -> parse_onnx runs to the same outputs (2 ranks, threads)."""
    from nets import run_network
    from simulate import run_ranks

    import dist_rt
    from dist_rt.models import llama_inputs

    net = _llama(layers=1)
    feeds = llama_inputs(None, 2, 5)
    feeds["input_ids"] %= 128
    ref = run_network(_llama(layers=1), feeds)
    plan = sharding.plan(net, 2, cost_model=TEST_COST)

    def via_onnx(local, f, rt):
        return run_network(dist_rt.parse_onnx(dist_rt.export_onnx(local)), f, rt)

    for out in run_ranks(plan, feeds, via_onnx):
        assert max(float(np.max(np.abs(out[k] - ref[k]))) for k in ref) <= 1e-4


def test_explain_cli(tmp_path):
    import subprocess

    import onnx

    from dist_rt.models import LlamaConfig, make_llama

    model = tmp_path / "llama.onnx"
    onnx.save(make_llama(LlamaConfig()), str(model))
    svg = tmp_path / "plan.svg"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "-m", "sharding.explain", str(model), "-n", "4",
                           "--svg", str(svg), "--device", "cpu", "--shapes", "input_ids:1x16"],
                          capture_output=True, text=True, env=env, cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "all_reduce x4" in proc.stdout and "o_proj/MatMul" in proc.stdout
    assert svg.read_text().startswith("<svg")
    bad = subprocess.run([sys.executable, "-m", "sharding.explain", str(tmp_path / "no.onnx")],
                         capture_output=True, text=True, env=env, cwd=root, timeout=60)
    assert bad.returncode == 1 and "sharding.explain: error:" in bad.stderr


class TestAllToAll:
    """``S(a) -> S(b)`` reshards by one all_to_all (not all_gather + slice) and stays exact."""

    @staticmethod
    def _net(shape):
        import dist_rt

        net = dist_rt.Network("reshard")
        x = net.add_input("x", np.float32, shape)
        a = net.add_layer("Relu", [x], {}, name="relu", outputs=["a"]).outputs[0]
        b = net.add_layer("Sigmoid", [a], {}, name="sigmoid", outputs=["b"]).outputs[0]
        net.mark_output(b)
        net.infer_shapes()
        return net

    @pytest.mark.parametrize("n", [2, 4])
    @pytest.mark.parametrize("src,dst", [(0, 2), (2, 0), (1, 2), (2, 1), (0, 1)])
    def test_reshard(self, n, src, dst):
        from nets import run_network
        from simulate import run_ranks

        shape = (4, 8, 12)
        hints = {"tensors": {"a": f"S({src})", "b": f"S({dst})"}}
        plan = sharding.plan(self._net(shape), n, hints=hints, cost_model=TEST_COST)
        assert plan.collective_counts() == {"all_to_all": 1, "all_gather": 1}, plan.summary()
        local = plan.partition(1)
        (a2a,) = [lay for lay in local.layers if lay.attr("collective_operation") ==
                  "all_to_all"]
        assert a2a.attr("axis") == dst
        want = list(shape)
        want[dst] //= n
        sig = next(lay for lay in local.layers if lay.op_type == "Sigmoid")
        assert sig.inputs[0].shape == tuple(want)
        feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        ref = run_network(self._net(shape), feeds)["b"]
        for out in run_ranks(plan, feeds, run_network):
            np.testing.assert_allclose(out["b"], ref, rtol=1e-6)

    def test_cost_below_all_gather(self):
        from sharding.search import Problem, reshard_cost

        net = self._net((4, 8, 12))
        prob = Problem(net, {}, {}, 4, TEST_COST, {})
        t = net.tensors["a"]
        a2a = reshard_cost(prob, t, Shard(0), Shard(1))
        gather = reshard_cost(prob, t, Shard(0), R)
        assert a2a < gather


#: Memory-bound (decode-like) machine: expert weights are worth more than moving tokens.
DECODE_COST = sharding.CostModel(alpha=1e-5, link_bandwidth=1e9, peak_flops=1e12,
                                 memory_bandwidth=1e9, name="decode")
#: Tokens data-parallel: the MoE dispatch and combine run on this rank's token groups.
DATA_PARALLEL_MOE = {"layers": {"*/dispatch/Einsum": "split-g", "*/combine/Einsum": "split-g"}}


class TestCapacityMoE:
    @pytest.mark.parametrize("n", [2, 4])
    def test_expert_parallel_all_to_all(self, n):
        """Data-parallel tokens: dispatch -> all_to_all(E) -> local experts -> all_to_all back,
        rather than replicated experts or all-gather + reduce-scatter; outputs stay exact."""
        from nets import run_network
        from simulate import run_ranks

        from dist_rt import parse_onnx
        from dist_rt.models import MoEConfig, make_moe
        from dist_rt.models.moe import sample_inputs

        cfg = MoEConfig(dispatch="capacity")
        plan = sharding.plan(parse_onnx(make_moe(cfg)), n, cost_model=DECODE_COST,
                             hints=DATA_PARALLEL_MOE)
        assert plan.collective_counts().get("all_to_all", 0) >= 2, plan.summary()
        for w in ("w1", "w2", "w3"):
            assert plan.placements[f"model.layers.0.block_sparse_moe.experts.{w}"] == \
                (Shard(0),)
        local = plan.partition(0)
        moe = sorted((lay.inputs[0].producer.name, lay.attr("axis")) for lay in local.layers
                     if lay.attr("collective_operation") == "all_to_all"
                     and "block_sparse_moe" in lay.name)
        assert moe == [("/model/layers.0/block_sparse_moe/dispatch/Einsum", 0),
                       ("/model/layers.0/block_sparse_moe/experts/Reshape_1", 1)]
        experts = next(t for t in local.tensors.values()
                       if t.producer is not None and t.producer.name.endswith("experts/w1/"
                                                                              "MatMul"))
        assert experts.shape[0] == cfg.experts // n
        feeds = sample_inputs(cfg)
        ref = run_network(parse_onnx(make_moe(cfg)), feeds)["logits"]
        for out in run_ranks(plan, feeds, run_network):
            assert float(np.max(np.abs(out["logits"] - ref))) <= 1e-4

"""Plan structure: Megatron pattern, weight bytes, hints, errors; placements and dim maps."""

import os
import sys

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


class TestMegatron:
    @pytest.mark.parametrize("n", [2, 4])
    def test_two_all_reduces_per_layer(self, n):
        layers = 3
        net = transformer(layers=layers)
        plan = sharding.plan(net, n, cost_model=TEST_COST)
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
                assert plan.strategies[layer.name].is_replicated

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

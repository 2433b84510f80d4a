"""memory_plan: no two live buffers overlap; peak >= lower bound; symbolic shapes skip."""

from __future__ import annotations

import numpy as np
import pytest
from _builder_nets import mlp
from hypothesis import given, settings
from hypothesis import strategies as st

from dist_rt import Builder, BuilderConfig
from dist_rt.builder.passes import BuildState, memory_plan


def _check_no_overlap(sizes, spans, offsets):
    for i in range(len(sizes)):
        for j in range(i):
            live = spans[i][0] <= spans[j][1] and spans[j][0] <= spans[i][1]
            disjoint = (offsets[i] + sizes[i] <= offsets[j]
                        or offsets[j] + sizes[j] <= offsets[i])
            assert not live or disjoint, (i, j)


class TestBestFit:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(1, 64), st.integers(0, 20), st.integers(0, 6)),
                    min_size=1, max_size=25))
    def test_valid_and_bounded(self, items):
        sizes = [s * 256 for s, _, _ in items]
        spans = [(a, a + d) for _, a, d in items]
        offsets, arena = memory_plan.best_fit(sizes, spans)
        _check_no_overlap(sizes, spans, offsets)
        lower = max(sum(s for s, (a, b) in zip(sizes, spans, strict=True) if a <= t <= b)
                    for t in range(27))
        assert lower <= arena <= sum(sizes)

    def test_reuses_dead_buffers(self):
        # a chain: each buffer dies right after the next is made -> two slots suffice
        sizes = [1024] * 6
        spans = [(i, i + 1) for i in range(6)]
        _, arena = memory_plan.best_fit(sizes, spans)
        assert arena == 2048


class TestMemoryPlanPass:
    def test_plan_for_given_shapes(self):
        net, _ = mlp(np.random.default_rng(0), d_in=7, d_hidden=13, d_out=5)
        engine = Builder(BuilderConfig(verify=True)).build(net, input_shapes={"x": (33, 7)})
        plan = engine.memory_plan
        assert plan["input_shapes"] == {"x": [33, 7]}
        assert plan["lower_bound_bytes"] <= plan["arena_bytes"] == engine.activation_bytes
        assert set(plan["buffers"]) == {t.name for lay in engine.network.layers
                                       for t in lay.outputs}
        for name, (_, nbytes, _, _) in plan["buffers"].items():
            t = engine.network.tensors[name]
            want = int(np.prod((33, t.shape[-1]))) * t.dtype.itemsize
            assert want <= nbytes < want + memory_plan.ALIGNMENT

    def test_profile_max_used(self):
        net, _ = mlp(np.random.default_rng(0))
        cfg = BuilderConfig()
        cfg.add_profile("p", min={"x": (1, 7)}, opt={"x": (4, 7)}, max={"x": (64, 7)})
        assert Builder(cfg).build(net).memory_plan["input_shapes"] == {"x": [64, 7]}

    def test_symbolic_skips_with_note(self):
        net, _ = mlp(np.random.default_rng(0))
        state = BuildState(BuilderConfig())
        note = memory_plan.run(net, state)
        assert state.memory_plan is None and "symbolic" in note

    @pytest.mark.parametrize("batch", [1, 17])
    def test_outputs_live_to_end(self, batch):
        net, _ = mlp(np.random.default_rng(0))
        engine = Builder().build(net, input_shapes={"x": (batch, 7)})
        last = len(engine.network.layers) - 1
        out = engine.network.outputs[0].name
        assert engine.memory_plan["buffers"][out][3] == last

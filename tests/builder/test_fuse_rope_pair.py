"""fuse_rope_pair: RotaryHalf layers of one cos/sin pair up into dist_rt::RotaryHalfPair.

Llama builds (GQA and dynamic-shape MHA) are compared with ``optimization_level=0`` on the
CPU; hand-built networks cover what must not merge (other tables, a layer that reads the
other's output), an odd count and a reader of the first output placed before the second.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from _builder_nets import LLAMA_IDS, LLAMA_PARAMS, llama_net, logits

from dist_rt import Builder, BuilderConfig
from dist_rt.builder.passes import BuildState, fuse_rope_pair
from dist_rt.builder.verify import verify
from dist_rt.models.llama import sample_inputs
from dist_rt.network import Network, Tensor

D = 6  # head dim: even, not a multiple of any vector width


def _build(net: Network, level: int = 2, **kw):
    return Builder(BuilderConfig(device="cpu", optimization_level=level, verify=True,
                                 **kw)).build(net)


def _ops(engine) -> Counter:
    return Counter(lay.op_type for lay in engine.network.layers)


def _run(engine, feeds: dict) -> dict:
    with engine.create_execution_context() as ctx:
        return ctx.execute(feeds)


@pytest.fixture(scope="module", params=LLAMA_PARAMS, ids=LLAMA_IDS)
def llama(request):
    return llama_net(*request.param)


class TestLlama:
    def test_q_and_k_of_every_layer_merge(self, llama, monkeypatch):
        cfg, net = llama
        engine = _build(net)
        ops = _ops(engine)
        assert ops["RotaryHalfPair"] == cfg.layers and ops["RotaryHalf"] == 0
        assert engine.build_notes["fuse_rope_pair"] == f"{cfg.layers} RoPE pairs merged"
        pairs = [lay for lay in engine.network.layers if lay.op_type == "RotaryHalfPair"]
        for layer in pairs:
            q, k, cos, sin = layer.inputs
            assert (q.shape[1], k.shape[1]) == (cfg.heads, cfg.kv_heads)
            assert len(layer.metadata["fused_from"]) == 2
        monkeypatch.setattr(fuse_rope_pair, "run", lambda n, s: "off")
        singles = [lay for lay in _build(net).network.layers if lay.op_type == "RotaryHalf"]
        # Each layer's q and k pair up, and the outputs keep the names readers know.
        assert ([t.name for lay in pairs for t in lay.outputs]
                == [lay.outputs[0].name for lay in singles])

    def test_runs_after_the_rope_passes(self, llama):
        _, net = llama
        names = list(_build(net).build_notes)
        at = names.index("fuse_rope_pair")
        assert names.index("fuse_rope") < at and names.index("fuse_attn_layout") < at
        assert at < names.index("precision")

    @pytest.mark.parametrize("batch, seq", [(1, 1), (2, 7), (3, 16)])
    def test_equals_level_0(self, llama, batch, seq):
        cfg, net = llama
        feeds = sample_inputs(cfg, batch, seq, seed=batch + seq)
        np.testing.assert_allclose(logits(_build(net), feeds), logits(_build(net, 0), feeds),
                                   rtol=1e-4, atol=1e-4)

    def test_fp16_close_to_level_0(self, llama):
        cfg, net = llama
        feeds = sample_inputs(cfg, 2, 5)
        ref = logits(_build(net, 0), feeds)
        out = logits(_build(net, precision="fp16"), feeds)
        assert np.max(np.abs(out - ref)) <= 0.01 * (1 + np.max(np.abs(ref)))

    def test_level_1_has_no_pairs(self, llama):
        _, net = llama
        assert _ops(_build(net, 1))["RotaryHalfPair"] == 0


class _Rope:
    """A hand-built network of RotaryHalf layers over (B, H, S, D) inputs."""

    def __init__(self, seq: int = 5):
        self.net = Network("ropes")
        self.net.opsets["dist_rt"] = 1
        self.seq = seq
        self.shapes: dict[str, tuple[int, ...]] = {}

    def input(self, name: str, shape: tuple[int, ...]) -> Tensor:
        self.shapes[name] = shape
        return self.net.add_input(name, np.float32, shape)

    def x(self, name: str, heads: int) -> Tensor:
        return self.input(name, (2, heads, self.seq, D))

    def table(self, name: str) -> Tensor:
        return self.input(name, (1, 1, self.seq, D))

    def rope(self, x: Tensor, cos: Tensor, sin: Tensor, output: bool = True) -> Tensor:
        y = self.net.add_layer("RotaryHalf", [x, cos, sin], domain="dist_rt").outputs[0]
        if output:
            self.net.mark_output(y)
        return y

    def feeds(self, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {n: rng.standard_normal(s).astype(np.float32) for n, s in self.shapes.items()}

    def check(self, pairs: int, singles: int):
        """Build at level 2: ``pairs`` RotaryHalfPair and ``singles`` RotaryHalf layers, the
        outputs equal to level 0's. Returns the engine."""
        engine = _build(self.net)
        ops = _ops(engine)
        assert (ops["RotaryHalfPair"], ops["RotaryHalf"]) == (pairs, singles)
        assert engine.build_notes["fuse_rope_pair"] == f"{pairs} RoPE pairs merged"
        feeds = self.feeds()
        want = _run(_build(self.net, 0), feeds)
        got = _run(engine, feeds)
        assert sorted(got) == sorted(want)
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-6)
        return engine


class TestPairing:
    def test_gqa_pair(self):
        g = _Rope()
        cos, sin = g.table("cos"), g.table("sin")
        g.rope(g.x("q", 8), cos, sin)
        g.rope(g.x("k", 2), cos, sin)
        engine = g.check(pairs=1, singles=0)
        (pair,) = [lay for lay in engine.network.layers if lay.op_type == "RotaryHalfPair"]
        assert [t.shape for t in pair.outputs] == [(2, 8, 5, D), (2, 2, 5, D)]

    @pytest.mark.parametrize("shared", ["cos", "sin", "neither"])
    def test_other_tables_stay_apart(self, shared):
        g = _Rope()
        cos, sin = g.table("cos"), g.table("sin")
        cos2 = cos if shared == "cos" else g.table("cos2")
        sin2 = sin if shared == "sin" else g.table("sin2")
        g.rope(g.x("q", 4), cos, sin)
        g.rope(g.x("k", 2), cos2, sin2)
        g.check(pairs=0, singles=2)

    def test_swapped_tables_stay_apart(self):
        g = _Rope()
        a, b = g.table("a"), g.table("b")
        g.rope(g.x("q", 4), a, b)
        g.rope(g.x("k", 2), b, a)
        g.check(pairs=0, singles=2)

    @pytest.mark.parametrize("count, pairs", [(1, 0), (3, 1), (5, 2), (6, 3)])
    def test_odd_one_stays(self, count, pairs):
        g = _Rope()
        cos, sin = g.table("cos"), g.table("sin")
        for i in range(count):
            g.rope(g.x(f"x{i}", 1 + i % 3), cos, sin)
        engine = g.check(pairs=pairs, singles=count - 2 * pairs)
        if count % 2:  # network order, two at a time: the last one is left
            (single,) = [lay for lay in engine.network.layers if lay.op_type == "RotaryHalf"]
            assert single.inputs[0].name == f"x{count - 1}"

    def test_two_tables_pair_separately(self):
        g = _Rope()
        cos, sin, cos2, sin2 = (g.table(n) for n in ("cos", "sin", "cos2", "sin2"))
        for i, (c, s) in enumerate([(cos, sin), (cos2, sin2), (cos, sin), (cos2, sin2)]):
            g.rope(g.x(f"x{i}", 2), c, s)
        engine = g.check(pairs=2, singles=0)
        for lay in engine.network.layers:
            if lay.op_type == "RotaryHalfPair":
                assert {lay.inputs[2].name, lay.inputs[3].name} in ({"cos", "sin"},
                                                                    {"cos2", "sin2"})

    def test_dependent_layers_stay_apart(self):
        """The second reads the first's output: one layer could not run both."""
        g = _Rope()
        cos, sin = g.table("cos"), g.table("sin")
        r1 = g.rope(g.x("q", 2), cos, sin, output=False)
        mid = g.net.add_layer("Relu", [r1]).outputs[0]
        g.rope(mid, cos, sin)
        g.check(pairs=0, singles=2)

    def test_dependent_first_pairs_with_the_next(self):
        g = _Rope()
        cos, sin = g.table("cos"), g.table("sin")
        r1 = g.rope(g.x("a", 2), cos, sin)
        r2 = g.rope(g.net.add_layer("Relu", [r1]).outputs[0], cos, sin)
        g.rope(g.x("c", 3), cos, sin)
        engine = g.check(pairs=1, singles=1)
        (pair,) = [lay for lay in engine.network.layers if lay.op_type == "RotaryHalfPair"]
        assert pair.outputs[0].name == r2.name

    def test_reader_between_the_two(self):
        """A reader of the first output sits before the second RotaryHalf in layer order: the
        merged layer must come before it."""
        g = _Rope()
        cos, sin = g.table("cos"), g.table("sin")
        r1 = g.rope(g.x("q", 2), cos, sin, output=False)
        early = g.net.add_layer("Relu", [r1]).outputs[0]
        g.net.mark_output(early)
        k = g.net.add_layer("Neg", [g.x("k", 2)]).outputs[0]
        g.rope(k, cos, sin)
        engine = g.check(pairs=1, singles=0)
        order = [lay.op_type for lay in engine.network.layers]
        assert order.index("RotaryHalfPair") < order.index("Relu")
        assert order.index("Neg") < order.index("RotaryHalfPair")


class TestPass:
    def test_on_the_ir(self):
        """The pass alone keeps the IR valid and names; nothing to merge is a no-op."""
        g = _Rope()
        cos, sin = g.table("cos"), g.table("sin")
        outs = [g.rope(g.x(n, h), cos, sin).name for n, h in (("q", 4), ("k", 2))]
        state = BuildState(BuilderConfig(device="cpu"))
        g.net.infer_shapes()
        assert fuse_rope_pair.run(g.net, state) == "1 RoPE pairs merged"
        verify(g.net, "fuse_rope_pair")
        assert [t.name for t in g.net.outputs] == outs
        (pair,) = g.net.layers
        assert [t.name for t in pair.outputs] == outs
        assert fuse_rope_pair.run(g.net, state) == "0 RoPE pairs merged"

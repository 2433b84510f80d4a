"""Tactics, the tactic-selection pass and the timing cache (CPU; CUDA in test_tactics_cuda)."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig
from dist_rt.builder import tactics
from dist_rt.builder.passes import tactics as tactic_pass
from dist_rt.builder.timing_cache import TimingCache, TimingCacheWarning
from dist_rt.engine import Engine
from dist_rt.errors import BuildError
from dist_rt.network import Network
from dist_rt.ops import RunContext

RT = RunContext()


def _layer(op_type, arrays, attributes=None, domain=""):
    """A one-layer network over constant inputs; returns (layer, input arrays)."""
    net = Network("one")
    ins = [None if a is None else net.add_constant(f"in{i}", a) for i, a in enumerate(arrays)]
    return net.add_layer(op_type, ins, attributes or {}, domain=domain), list(arrays)


def _specs(arrays):
    return [None if a is None else (a.shape, a.dtype) for a in arrays]


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _cases(rng):
    """(id, op, domain, arrays, attributes, tactic)."""
    q, k, v = _rand(rng, 2, 4, 300, 16), _rand(rng, 2, 2, 300, 16), _rand(rng, 2, 2, 300, 16)
    k2, v2 = _rand(rng, 1, 2, 400, 8), _rand(rng, 1, 2, 400, 8)
    mask = rng.random((2, 1, 300, 300)) > 0.3
    return [
        ("mm-flat3d", "MatMul", "", [_rand(rng, 3, 5, 7), _rand(rng, 7, 4)], {}, "flat2d"),
        ("mm-flat4d", "MatMul", "", [_rand(rng, 2, 3, 5, 7), _rand(rng, 7, 4)], {}, "flat2d"),
        ("mm-einsum", "MatMul", "", [_rand(rng, 2, 3, 5, 7), _rand(rng, 2, 3, 7, 4)], {},
         "einsum"),
        ("mm-einsum-bcast", "MatMul", "", [_rand(rng, 2, 5, 7), _rand(rng, 1, 7, 4)], {},
         "einsum"),
        ("conv-1x1", "Conv", "", [_rand(rng, 2, 6, 9, 7), _rand(rng, 5, 6, 1, 1), _rand(rng, 5)],
         {}, "pointwise"),
        ("conv-1x1-s2", "Conv", "", [_rand(rng, 2, 6, 9, 7), _rand(rng, 5, 6, 1, 1)],
         {"strides": [2, 2]}, "pointwise"),
        ("conv-dw", "Conv", "", [_rand(rng, 2, 6, 9, 7), _rand(rng, 6, 1, 3, 3), _rand(rng, 6)],
         {"group": 6, "pads": [1, 1, 1, 1]}, "depthwise"),
        ("conv-dw-mult", "Conv", "", [_rand(rng, 1, 3, 10, 11), _rand(rng, 6, 1, 3, 2)],
         {"group": 3, "strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1]},
         "depthwise"),
        ("conv-tap", "Conv", "", [_rand(rng, 2, 3, 11, 10), _rand(rng, 4, 3, 3, 3), _rand(rng, 4)],
         {"strides": [2, 1], "dilations": [2, 1], "pads": [1, 2, 0, 1]}, "tap_gemm"),
        ("conv-tap-1d", "Conv", "", [_rand(rng, 2, 3, 17), _rand(rng, 4, 3, 5)],
         {"auto_pad": "SAME_UPPER"}, "tap_gemm"),
        ("attn-causal", "Attention", "dist_rt", [q, k, v], {"causal": 1}, "chunked"),
        ("attn-plain", "Attention", "dist_rt", [q, k, v], {}, "chunked"),
        ("attn-mask", "Attention", "dist_rt", [q, k, v, mask], {"causal": 1}, "chunked"),
        ("attn-kv-longer", "Attention", "dist_rt", [_rand(rng, 1, 4, 260, 8), k2, v2],
         {"causal": 1, "num_heads": 4, "kv_num_heads": 2, "scale": 0.3}, "chunked"),
        ("attn-float-mask", "Attention", "dist_rt",
         [_rand(rng, 1, 2, 256, 8), k2[:, :2], v2[:, :2], _rand(rng, 1, 400)], {}, "chunked"),
        # fuse_attention_layout's (B, S, H, D) output: the tactic once returned (B, H, S, D)
        # and a tensor-parallel Llama's next Reshape failed on it
        ("attn-bshd", "Attention", "dist_rt", [q, k, v], {"causal": 1, "output_layout": "bshd"},
         "chunked"),
    ]


CASES = _cases(np.random.default_rng(0))


class TestCpuTactics:
    @pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
    def test_matches_reference(self, case):
        _, op, domain, arrays, attrs, name = case
        layer, inputs = _layer(op, arrays, attrs, domain)
        tactic = tactics.find("cpu", layer, name)
        assert tactic is not None and tactic.applies(layer, _specs(arrays))
        want = layer.op.run(layer, inputs, RT)[0]
        got = tactic.run(layer, inputs, RT)
        assert got is not None, f"{name} declined"
        assert got[0].shape == want.shape and got[0].dtype == want.dtype
        np.testing.assert_allclose(got[0], want, rtol=2e-5, atol=2e-5)

    def test_applicability(self):
        rng = np.random.default_rng(1)
        layer, arrays = _layer("Conv", [_rand(rng, 1, 4, 5, 5), _rand(rng, 4, 4, 3, 3)])
        names = [t.name for t in tactics.applicable("cpu", layer, _specs(arrays))]
        assert names == ["default", "tap_gemm"]
        layer, arrays = _layer("MatMul", [_rand(rng, 4, 5), _rand(rng, 5, 3)])
        assert [t.name for t in tactics.applicable("cpu", layer, _specs(arrays))] == \
            ["default", "einsum"]
        assert tactics.tactics_for("cpu", _layer("Relu", [arrays[0]])[0]) == ()

    def test_declines_other_shapes(self):
        # a tactic recorded for one shape returns None (default path) when a call differs
        rng = np.random.default_rng(2)
        layer, _ = _layer("Conv", [_rand(rng, 1, 4, 5, 5), _rand(rng, 4, 4, 1, 1)])
        tactic = tactics.find("cpu", layer, "depthwise")
        assert tactic.run(layer, [_rand(rng, 1, 4, 5, 5), _rand(rng, 4, 4, 1, 1)], RT) is None

    def test_backend_honours_metadata(self, monkeypatch):
        rng = np.random.default_rng(3)
        layer, arrays = _layer("MatMul", [_rand(rng, 2, 3, 4), _rand(rng, 4, 5)])
        from dist_rt.runtime.backends import cpu  # noqa: PLC0415

        calls = []
        real = tactics.CPU_TACTICS[("", "MatMul")]
        spy = tactics.Tactic("flat2d", lambda *a: calls.append(1) or real[1].run(*a))
        monkeypatch.setitem(tactics.CPU_TACTICS, ("", "MatMul"), (real[0], spy, real[2]))
        cpu.run_layer(layer, arrays, RT)
        assert not calls
        layer.metadata["tactic"] = "flat2d"
        out = cpu.run_layer(layer, arrays, RT)[0]
        assert calls == [1]
        np.testing.assert_allclose(out, arrays[0] @ arrays[1], rtol=1e-6)


def mlp(rng, widths=(192, 320, 224, 288, 256, 352, 160), seq=24):
    """x (batch, seq, d0) through MatMuls of distinct shapes (each a timing signature)."""
    net = Network("mlp_tactics")
    h = net.add_input("x", np.float32, ("batch", seq, widths[0]))
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        h = net.add_matmul(h, net.add_constant(f"w{i}", _rand(rng, a, b) / np.sqrt(a)))
        h = net.add_activation(h, "Relu")
    net.mark_output(h)
    return net


@pytest.fixture
def count_timing(monkeypatch):
    """Counts calls of the timing function (one per timed signature)."""
    calls = []
    real = tactic_pass.time_tactics

    def counted(*args, **kw):
        calls.append(args[0].name)
        return real(*args, **kw)

    monkeypatch.setattr(tactic_pass, "time_tactics", counted)
    return calls


class TestPass:
    def test_records_choices(self, tmp_path):
        net = mlp(np.random.default_rng(0))
        engine = Builder(BuilderConfig(verify=True, optimization_level=3)).build(
            net, input_shapes={"x": (4, 24, 192)})
        matmuls = [lay for lay in engine.network.layers if lay.op_type == "MatMul"]
        assert len(engine.tactics) == len(matmuls) == 6
        for lay in matmuls:
            assert lay.metadata["tactic"] == engine.tactics[lay.name]
            assert engine.tactics[lay.name] in ("default", "flat2d", "einsum")
            # The shapes it was timed at travel with it (CUDA's lt<i> keeps to them).
            shapes = lay.metadata["tactic_shapes"]
            assert shapes[0][:2] == [4, 24] and shapes[1] == list(lay.inputs[1].shape)
        assert "6 layers: 0 cached, 6 timed" in engine.build_notes["tactics"]
        x = np.random.default_rng(1).standard_normal((4, 24, 192)).astype(np.float32)
        ref = Builder(BuilderConfig(optimization_level=0)).build(net)
        assert ref.tactics == {}
        with engine.create_execution_context() as a, ref.create_execution_context() as b:
            np.testing.assert_allclose(a.execute({"x": x})[net.outputs[0].name],
                                       b.execute({"x": x})[net.outputs[0].name],
                                       rtol=1e-4, atol=1e-5)

    def test_off_by_default(self, count_timing):
        net = mlp(np.random.default_rng(0))
        engine = Builder(BuilderConfig()).build(net, input_shapes={"x": (4, 24, 192)})
        assert engine.tactics == {} and not count_timing

    def test_samples_run_back_to_back_calls(self, monkeypatch):
        """A fast call is timed in runs of many calls (SAMPLE_MS), a slow one alone."""
        runs = [0]  # calls since the last synchronize

        class Backend:
            def synchronize(self):
                runs.append(0)

            def make_run_context(self):
                return None

        def tactic(name, seconds):
            def run(layer, inputs, rt):
                runs[-1] += 1
                if seconds:  # sleep(0) yields the CPU: one took up to 10 ms on a busy host
                    time.sleep(seconds)
                return [0]
            return tactics.Tactic(name, run)

        layer = mlp(np.random.default_rng(0)).layers[0]
        times = tactic_pass.time_tactics(layer, [tactic("fast", 0.0), tactic("slow", 0.004)],
                                         [], Backend())
        assert set(times) == {"fast", "slow"} and times["slow"] >= 4.0
        assert max(runs) > 5 and max(runs) <= tactic_pass.MAX_CALLS  # the fast samples
        assert times["fast"] < times["slow"]

    def test_device_clock_when_the_backend_has_one(self):
        """``backend.time_calls`` samples replace host timing; None falls back to the host."""
        seen = []

        class Backend:
            def __init__(self, samples):
                self.samples = samples

            def synchronize(self):
                pass

            def make_run_context(self):
                return None

            def time_calls(self, call, calls, repeats):
                seen.append((calls, repeats))
                call()  # the timer runs the same call
                return self.samples

        ran = []
        tactic = tactics.Tactic("t", lambda layer, inputs, rt: ran.append(1) or [0])
        layer = mlp(np.random.default_rng(0)).layers[0]
        times = tactic_pass.time_tactics(layer, [tactic], [], Backend([9.0, 1.0, 2.0]))
        assert times == {"t": 2.0} and seen[-1][0] >= 1 and seen[-1][1] >= 1
        host = tactic_pass.time_tactics(layer, [tactic], [], Backend(None))
        assert 0.0 < host["t"] < 1.0  # host-timed: an instant call, not the device samples
        assert len(seen) == 2 and len(ran) > 4

    def test_rotation_keeps_operands_out_of_cache(self):
        class Backend:
            def __init__(self, cache):
                self.cache = cache

            def cache_bytes(self):
                return self.cache

        a, w = np.ones((4, 64), np.float32), np.ones((64, 256), np.float32)  # 1 KiB + 64 KiB
        sets = tactic_pass._rotation([a, w, None], Backend(256 << 10))
        assert len(sets) == 8 and sets[0][0] is a  # 8 x 65 KiB >= 2 x 256 KiB
        assert all(s[2] is None and s[1] is not w and np.array_equal(s[1], w) for s in sets[1:])
        assert len(tactic_pass._rotation([a, w], Backend(1 << 30))) == tactic_pass.MAX_COPIES
        assert tactic_pass._rotation([a, w], Backend(0)) == [[a, w]]
        assert tactic_pass._rotation([a, w], object()) == [[a, w]]  # no cache_bytes: as is

    def test_choose_needs_a_real_gain(self):
        assert tactic_pass.choose({"default": 1.0, "einsum": 0.97}) == "default"
        assert tactic_pass.choose({"default": 1.0, "einsum": 0.5, "flat2d": 0.6}) == "einsum"
        assert tactic_pass.choose({"flat2d": 0.6}) == "flat2d"

    def test_symbolic_shapes_keep_default(self, count_timing):
        net = mlp(np.random.default_rng(0), widths=(8, 8, 8))
        engine = Builder(BuilderConfig(optimization_level=3)).build(net)
        assert engine.tactics == {} and not count_timing
        assert "2 symbolic" in engine.build_notes["tactics"]

    def test_profile_opt_shapes(self, tmp_path, count_timing):
        cfg = BuilderConfig(timing_cache=str(tmp_path / "tc.json"))
        cfg.add_profile("p", min={"x": (1, 24, 8)}, opt={"x": (3, 24, 8)}, max={"x": (9, 24, 8)})
        engine = Builder(cfg).build(mlp(np.random.default_rng(0), widths=(8, 8, 8)))
        assert len(engine.tactics) == 2 and len(count_timing) == 1  # one shared signature
        [key] = json.loads((tmp_path / "tc.json").read_text())["entries"]
        assert "float32[3,24,8]" in key

    def test_signature(self):
        layer, arrays = _layer("Conv", [np.zeros((1, 2, 5, 5), np.float32),
                                        np.zeros((3, 2, 3, 3), np.float32)], {"pads": [1] * 4})
        sig = tactic_pass.signature(layer, _specs(arrays), "cpu", "x86_64")
        assert sig == ('Conv(float32[1,2,5,5],float32[3,2,3,3]){"pads":[1,1,1,1]}'
                       f"@cpu/x86_64/dist_rt-{dist_rt.__version__}")

    def test_signature_marks_transposed_inputs(self):
        """A weight the device keeps (N, K) is another cuBLASLt problem: another key."""
        layer, arrays = _layer("MatMul", [np.zeros((4, 16), np.float16),
                                          np.zeros((16, 8), np.float16)])
        plain = tactic_pass.signature(layer, _specs(arrays), "cuda", "sm_90")
        marked = tactic_pass.signature(layer, _specs(arrays), "cuda", "sm_90", [1])
        assert plain.startswith("MatMul(float16[4,16],float16[16,8])")
        assert marked.startswith("MatMul(float16[4,16],float16[16,8]^T)") and marked != plain


def _build(net, cache, shapes=None):
    cfg = BuilderConfig(timing_cache=str(cache))
    t0 = time.perf_counter()
    engine = Builder(cfg).build(net, input_shapes=shapes or {"x": (16, 24, 192)})
    return engine, time.perf_counter() - t0


class TestTimingCache:
    def test_warm_cache_skips_timing(self, tmp_path, count_timing):
        net = mlp(np.random.default_rng(0))
        cache = tmp_path / "tc.json"
        first, cold = _build(net, cache)
        assert len(count_timing) == 6
        obj = json.loads(cache.read_text())
        assert obj["format"] == "dist_rt.timing_cache" and len(obj["entries"]) == 6
        assert obj["dist_rt_version"] == dist_rt.__version__ and obj["device"] == "cpu"
        assert all(e["tactic"] in e["times_ms"] for e in obj["entries"].values())
        assert any("float32[16,24,192]" in k for k in obj["entries"])
        count_timing.clear()
        second, warm = _build(net, cache)
        assert count_timing == []
        assert second.tactics == first.tactics
        assert "6 cached, 0 timed" in second.build_notes["tactics"]
        print(f"\ntactic build: first {cold * 1e3:.1f} ms, warm cache {warm * 1e3:.1f} ms "
              f"({cold / warm:.1f}x)")
        assert cold >= 3 * warm

    def test_new_shapes_add_entries(self, tmp_path, count_timing):
        net = mlp(np.random.default_rng(0), widths=(8, 8, 8))
        cache = tmp_path / "tc.json"
        _build(net, cache, {"x": (2, 24, 8)})
        _build(net, cache, {"x": (5, 24, 8)})
        assert len(count_timing) == 2
        assert len(json.loads(cache.read_text())["entries"]) == 2

    @pytest.mark.parametrize("damage", ["garbage", "checksum", "entries", "version", "arch",
                                        "format"])
    def test_unusable_cache_is_ignored_with_a_warning(self, tmp_path, count_timing, damage):
        net = mlp(np.random.default_rng(0), widths=(8, 8, 8))
        cache = tmp_path / "tc.json"
        _build(net, cache, {"x": (2, 24, 8)})
        obj = json.loads(cache.read_text())
        if damage == "garbage":
            cache.write_text(cache.read_text()[:40])
        else:
            if damage == "checksum":
                next(iter(obj["entries"].values()))["tactic"] = "einsum_edited"
            elif damage == "entries":
                obj["entries"] = {"x": {"tactic": 3}}
            elif damage == "version":
                obj["dist_rt_version"] = "0.0.1"
            elif damage == "arch":
                obj["arch"] = "riscv128"
            else:
                obj["format"] = "something else"
            cache.write_text(json.dumps(obj))
        count_timing.clear()
        with pytest.warns(TimingCacheWarning, match="tc.json.*ignored"):
            engine, _ = _build(net, cache, {"x": (2, 24, 8)})
        assert len(count_timing) == 1  # timed again
        assert "cache ignored" in engine.build_notes["tactics"]
        with warnings.catch_warnings():  # the rewritten file is valid again
            warnings.simplefilter("error")
            assert len(TimingCache(cache, "cpu", obj_arch(cache))) == 1

    def test_unwritable_cache_is_an_error(self, tmp_path):
        net = mlp(np.random.default_rng(0), widths=(8, 8, 8))
        with pytest.raises(BuildError, match="cannot write timing cache"):
            _build(net, tmp_path / "missing-dir" / "tc.json", {"x": (2, 24, 8)})

    def test_level0_times_only_with_a_cache(self, tmp_path, count_timing):
        net = mlp(np.random.default_rng(0), widths=(8, 8, 8))
        shapes = {"x": (2, 24, 8)}
        assert Builder(BuilderConfig(optimization_level=0)).build(net, shapes).tactics == {}
        engine = Builder(BuilderConfig(optimization_level=0, timing_cache=str(
            tmp_path / "tc.json"))).build(net, shapes)
        assert len(engine.tactics) == 2


def obj_arch(path):
    return json.loads(path.read_text())["arch"]


class TestPlanFile:
    def test_round_trip_and_inspect(self, tmp_path, capsys):
        net = mlp(np.random.default_rng(0), widths=(8, 16, 8))
        engine = Builder(BuilderConfig(optimization_level=3)).build(
            net, input_shapes={"x": (2, 24, 8)})
        # force a non-default tactic so the loaded engine must run it
        for lay in engine.network.layers:
            if lay.op_type == "MatMul":
                lay.metadata["tactic"] = engine.tactics[lay.name] = "flat2d"
        path = tmp_path / "e.plan"
        engine.save(path)
        loaded = Engine.load(path)
        assert loaded.tactics == engine.tactics
        assert {lay.name: lay.metadata.get("tactic") for lay in loaded.network.layers
                if lay.op_type == "MatMul"} == engine.tactics
        x = np.random.default_rng(1).standard_normal((2, 24, 8)).astype(np.float32)
        with loaded.create_execution_context() as ctx:
            got = ctx.execute({"x": x})[net.outputs[0].name]
        w = [t.weights.numpy() for t in net.constants]
        np.testing.assert_allclose(got, np.maximum(np.maximum(x @ w[0], 0) @ w[1], 0),
                                   rtol=1e-5, atol=1e-6)
        from dist_rt import inspect as dinspect  # noqa: PLC0415

        assert dinspect.main([str(path)]) == 0
        assert capsys.readouterr().out.count("tactic=flat2d") == 2


class TestResNet:
    def test_conv_tactics_keep_outputs(self, tmp_path, count_timing):
        from dist_rt.models.resnet import ResNetConfig, make_resnet, sample_inputs  # noqa: PLC0415

        cfg = ResNetConfig(image=32, widths=(16, 32), blocks=(1, 1), classes=5)
        net = dist_rt.parse_onnx(make_resnet(cfg))
        feeds = sample_inputs(cfg, 2, seed=3)
        shapes = {k: v.shape for k, v in feeds.items()}
        cache = str(tmp_path / "tc.json")
        t0 = time.perf_counter()
        engine = Builder(BuilderConfig(timing_cache=cache)).build(net, input_shapes=shapes)
        cold = time.perf_counter() - t0
        convs = [lay.name for lay in engine.network.layers if lay.op_type == "Conv"]
        assert convs and set(convs) <= set(engine.tactics)
        timed = len(count_timing)
        t0 = time.perf_counter()
        again = Builder(BuilderConfig(timing_cache=cache)).build(net, input_shapes=shapes)
        warm = time.perf_counter() - t0
        assert len(count_timing) == timed and again.tactics == engine.tactics
        print(f"\nresnet tactics {sorted(set(engine.tactics.values()))}: first build "
              f"{cold * 1e3:.0f} ms, warm cache {warm * 1e3:.0f} ms")
        ref = Builder(BuilderConfig(optimization_level=0)).build(net)
        with engine.create_execution_context() as a, ref.create_execution_context() as b:
            got, want = a.execute(feeds), b.execute(feeds)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)

"""fuse_matmul_cast: ``Cast(MatMul(A, B), to=FLOAT)`` on 16-bit A, B -> dist_rt::MatMulCast.

The pass fires only for CUDA builds; these CPU tests call it with a CUDA ``BuildState``, or
switch it on for CPU builds by patching ``fuse_matmul_cast.on_cuda`` (the fused layer then
runs its NumPy reference), as test_fuse_weight_only.py does.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from onnx import TensorProto

import dist_rt
from dist_rt import Builder, BuilderConfig, Engine, dtypes
from dist_rt.builder.passes import BuildState, fuse_matmul_cast
from dist_rt.builder.verify import verify
from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
from dist_rt.network import Network
from dist_rt.runtime.backends import resolve_device
from dist_rt.weights import Weights

MMC = "MatMulCast"
#: At level 0 the precision pass casts the Llama's unfolded float32 mask constant (the
#: float32 minimum) to fp16, where it becomes -inf as intended; NumPy warns about it.
MASK_TO_FP16 = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
TINY = LlamaConfig(vocab=96, hidden=64, layers=2, heads=4, kv_heads=2, mlp=96, max_seq=32)
#: Max |fused - unfused| / (1 + max |unfused|) per precision: the unfused logits carry one
#: 16-bit rounding the fused ones do not.
TOL = {"fp16": 5e-3, "bf16": 3e-2, "fp32": 5e-3}


@pytest.fixture
def fuse_on_cpu(monkeypatch):
    """Make the pass treat CPU builds as CUDA builds."""
    monkeypatch.setattr(fuse_matmul_cast, "on_cuda", lambda state: True)


def _cuda_state() -> BuildState:
    return BuildState(BuilderConfig(device="cuda"))


def _ops(net) -> Counter:
    return Counter(lay.op_type for lay in net.layers)


def _run(engine, feeds: dict) -> dict:
    with engine.create_execution_context() as ctx:
        return ctx.execute(feeds)


def _cast(net: Network, x, to=TensorProto.FLOAT, name=None):
    return net.add_layer("Cast", [x], {"to": to}, name=name).outputs[0]


def _weight(net: Network, rng, name: str, k: int, n: int, dtype):
    return net.add_constant(name, (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype))


class TestPattern:
    @pytest.mark.parametrize("dtype", [np.float16, dtypes.bfloat16], ids=["fp16", "bf16"])
    def test_fuses_and_keeps_the_output_name(self, dtype):
        rng = np.random.default_rng(0)
        net = Network("head")
        x = net.add_input("x", dtype, ("batch", 32))
        mm = net.add_layer("MatMul", [x, _weight(net, rng, "w", 32, 48, dtype)], name="mm")
        net.mark_output(_cast(net, mm.outputs[0], name="cast"))
        out = net.outputs[0].name
        note = fuse_matmul_cast.run(net, _cuda_state())
        verify(net, "fuse_matmul_cast")
        assert note == "1 MatMul+Cast pairs fused"
        (layer,) = net.layers
        assert (layer.op_type, layer.domain) == (MMC, "dist_rt")
        assert layer.attr("to") == TensorProto.FLOAT
        assert [t.name for t in layer.inputs] == ["x", "w"]  # the weight keeps its name
        assert layer.outputs[0] is net.outputs[0] and net.outputs[0].name == out
        assert net.outputs[0].dtype == np.float32 and net.outputs[0].shape == ("batch", 48)
        assert layer.metadata["fused_from"] == ["mm", "cast"]
        assert net.opsets.get("dist_rt") == 1

    def test_fires_only_where_it_should(self):
        """Two matches (fp16, bf16) among six near misses: only the matches are rewritten."""
        rng = np.random.default_rng(1)
        net = Network("misses")
        f16, bf16, f32 = np.float16, dtypes.bfloat16, np.float32
        x16 = net.add_input("x16", f16, (4, 32))
        xbf = net.add_input("xbf", bf16, (4, 32))
        x32 = net.add_input("x32", f32, (4, 32))

        def mm(x, dtype, name):
            return net.add_matmul(x, _weight(net, rng, name, 32, 8, dtype))

        outs = {
            "ok16": _cast(net, mm(x16, f16, "w_ok16")),
            "okbf": _cast(net, mm(xbf, bf16, "w_okbf")),
            "to16": _cast(net, mm(xbf, bf16, "w_to16"), TensorProto.FLOAT16),  # not to FLOAT
            "f32": _cast(net, mm(x32, f32, "w_f32")),                          # fp32 inputs
        }
        twice = mm(x16, f16, "w_twice")                                   # read twice
        outs["twice"] = _cast(net, twice)
        outs["twice_relu"] = net.add_activation(twice, "Relu")
        exposed = mm(x16, f16, "w_exposed")                               # a network output
        outs["exposed"], outs["exposed_cast"] = exposed, _cast(net, exposed)
        biased = net.add_elementwise(mm(x16, f16, "w_bias"),                 # MatMul + Add
                                     net.add_constant("bias", np.ones(8, f16)), "Add")
        outs["bias"] = _cast(net, biased)
        for t in outs.values():
            net.mark_output(t)
        names = [t.name for t in net.outputs]
        matched = {outs["ok16"].name, outs["okbf"].name}
        before = _ops(net)
        note = fuse_matmul_cast.run(net, _cuda_state())
        verify(net, "fuse_matmul_cast")
        assert note == "2 MatMul+Cast pairs fused"
        fused = [lay for lay in net.layers if lay.op_type == MMC]
        assert sorted(lay.inputs[1].name for lay in fused) == ["w_ok16", "w_okbf"]
        assert {lay.outputs[0].name for lay in fused} == matched
        ops = _ops(net)
        assert (ops["MatMul"], ops["Cast"]) == (before["MatMul"] - 2, before["Cast"] - 2)
        assert [t.name for t in net.outputs] == names

    def test_off_unless_cuda(self):
        net = Network("head")
        x = net.add_input("x", np.float16, (2, 16))
        net.mark_output(_cast(net, net.add_matmul(x, net.add_constant(
            "w", np.ones((16, 4), np.float16)))))
        devices = ["cpu"] + (["auto"] if resolve_device("auto") == "cpu" else [])
        for device in devices:
            note = fuse_matmul_cast.run(net, BuildState(BuilderConfig(device=device)))
            assert note.startswith("off") and _ops(net)[MMC] == 0
        engine = Builder(BuilderConfig(verify=True)).build(net)
        assert engine.build_notes["fuse_matmul_cast"].startswith("off")
        assert _ops(engine.network)[MMC] == 0

    @MASK_TO_FP16
    @pytest.mark.parametrize("level", [0, 1])
    def test_not_below_level_2(self, fuse_on_cpu, level):
        cfg = BuilderConfig(precision="fp16", optimization_level=level, verify=True)
        engine = Builder(cfg).build(dist_rt.parse_onnx(make_llama(TINY)))
        assert "fuse_matmul_cast" not in engine.build_notes
        assert _ops(engine.network)[MMC] == 0


def _mlp(rng) -> Network:
    """fp32 ``x (batch, 48) @ W1 -> Relu -> @ W2 (48 x 200)``; reduced precision wraps y."""
    net = Network("mlp")
    x = net.add_input("x", np.float32, ("batch", 48))
    h = net.add_activation(net.add_matmul(x, _weight(net, rng, "w1", 48, 64, np.float32)),
                           "Relu")
    net.mark_output(net.add_matmul(h, _weight(net, rng, "w2", 64, 200, np.float32)))
    return net


class TestEndToEnd:
    @pytest.mark.parametrize("precision", ["fp16", "bf16"])
    def test_level_2_matches_level_0(self, fuse_on_cpu, precision):
        rng = np.random.default_rng(2)
        net = _mlp(rng)
        out = net.outputs[0].name
        x = {"x": rng.standard_normal((5, 48)).astype(np.float32)}
        notes: list[str] = []
        fused = Builder(BuilderConfig(precision=precision, verify=True),
                        progress=notes.append).build(net)
        ref = Builder(BuilderConfig(precision=precision, optimization_level=0)).build(net)
        assert _ops(fused.network)[MMC] == 1 and _ops(ref.network)[MMC] == 0
        assert any("1 MatMul+Cast pairs fused" in n for n in notes)
        got, want = _run(fused, x)[out], _run(ref, x)[out]
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape == (5, 200)
        assert np.max(np.abs(got - want)) <= TOL[precision] * (1 + np.max(np.abs(want)))

    @MASK_TO_FP16
    @pytest.mark.parametrize("model_dtype, precision", [("float32", "fp16"),
                                                        ("float32", "bf16"),
                                                        ("float16", "fp32")])
    def test_llama_lm_head(self, fuse_on_cpu, model_dtype, precision):
        cfg = LlamaConfig(**{**TINY.__dict__, "dtype": model_dtype})
        net = dist_rt.parse_onnx(make_llama(cfg))
        fused = Builder(BuilderConfig(precision=precision, verify=True)).build(net)
        ref = Builder(BuilderConfig(precision=precision, optimization_level=0)).build(net)
        (head,) = [lay for lay in fused.network.layers if lay.op_type == MMC]
        assert head.inputs[1].name == "lm_head.weight" and head.outputs[0].name == "logits"
        assert fused.network.outputs[0] is head.outputs[0]
        for batch, seq in [(1, 1), (2, 7)]:
            feeds = sample_inputs(cfg, batch, seq, seed=batch + seq)
            got, want = _run(fused, feeds)["logits"], _run(ref, feeds)["logits"]
            assert got.dtype == np.float32 and got.shape == (batch, seq, cfg.vocab)
            assert np.max(np.abs(got - want)) <= TOL[precision] * (1 + np.max(np.abs(want)))


class TestRefitAndPlanFile:
    def test_refit_lm_head(self, fuse_on_cpu):
        net = dist_rt.parse_onnx(make_llama(TINY))
        engine = Builder(BuilderConfig(precision="fp16")).build(net)
        assert _ops(engine.network)[MMC] == 1
        feeds = sample_inputs(TINY, 2, 5)
        before = _run(engine, feeds)["logits"]
        shape = net.tensors["lm_head.weight"].shape
        new = {"lm_head.weight": (np.random.default_rng(3).standard_normal(shape) * 0.2)
               .astype(np.float32)}
        assert engine.refit(new) == ["lm_head.weight"]
        after = _run(engine, feeds)["logits"]
        assert np.abs(after - before).max() > 1e-2  # the refit changed something
        fresh_net = net.copy()
        fresh_net.tensors["lm_head.weight"].weights = Weights(new["lm_head.weight"])
        fresh = Builder(BuilderConfig(precision="fp16")).build(fresh_net)
        np.testing.assert_allclose(after, _run(fresh, feeds)["logits"], rtol=2e-3, atol=2e-3)

    def test_plan_file_round_trip(self, fuse_on_cpu, tmp_path):
        net = dist_rt.parse_onnx(make_llama(TINY))
        engine = Builder(BuilderConfig(precision="bf16")).build(net)
        path = tmp_path / "llama.plan"
        engine.save(path)
        loaded = Engine.load(path)
        (head,) = [lay for lay in loaded.network.layers if lay.op_type == MMC]
        assert head.domain == "dist_rt" and head.attr("to") == TensorProto.FLOAT
        assert head.inputs[1].dtype == dtypes.bfloat16 and head.outputs[0].dtype == np.float32
        assert head.metadata["fused_from"] == [
            lay.metadata["fused_from"] for lay in engine.network.layers
            if lay.op_type == MMC][0]
        assert loaded.build_notes["fuse_matmul_cast"] == "1 MatMul+Cast pairs fused"
        feeds = sample_inputs(TINY, 2, 6)
        np.testing.assert_array_equal(_run(loaded, feeds)["logits"],
                                      _run(engine, feeds)["logits"])

"""fuse_matmul_silu: MatMul(X, W) -> Split(halves) -> SiluMul -> dist_rt::MatMulSiluMul.

The pass fires only for CUDA builds; these CPU tests call it with a CUDA ``BuildState``, or
switch it on for CPU builds by patching ``fuse_matmul_silu.on_cuda`` (the fused layer then
runs its NumPy reference), as test_fuse_matmul_cast.py does.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig, Engine
from dist_rt.builder.passes import BuildState, fuse_matmul_silu
from dist_rt.builder.verify import verify
from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
from dist_rt.network import Network
from dist_rt.runtime.backends import resolve_device

GLU = "MatMulSiluMul"
TINY = LlamaConfig(vocab=96, hidden=64, layers=2, heads=4, kv_heads=2, mlp=96, max_seq=32)


@pytest.fixture
def fuse_on_cpu(monkeypatch):
    """Make the pass treat CPU builds as CUDA builds."""
    monkeypatch.setattr(fuse_matmul_silu, "on_cuda", lambda state: True)


def _cuda_state() -> BuildState:
    return BuildState(BuilderConfig(device="cuda"))


def _ops(net) -> Counter:
    return Counter(lay.op_type for lay in net.layers)


def _mlp(net: Network, x, rng, name: str, half: int = 12, split=None, swap=False, axis=-1):
    """x @ W (K, 2*half) -> Split -> SiluMul; the SiluMul's output (and the two halves)."""
    k = x.shape[-1]
    w = net.add_constant(f"{name}_w", (rng.standard_normal((k, 2 * half)) / np.sqrt(k))
                         .astype(np.float32))
    h = net.add_matmul(x, w)
    sizes = net.add_constant(f"{name}_sizes", np.array(split or [half, half], np.int64))
    g, u = net.add_layer("Split", [h, sizes], {"axis": axis}, name=f"{name}_split",
                         outputs=[f"{name}_g", f"{name}_u"]).outputs
    a, b = (u, g) if swap else (g, u)
    y = net.add_layer("SiluMul", [a, b], name=f"{name}_gate", domain="dist_rt").outputs[0]
    return y, g, u


class TestPattern:
    def test_fuses_and_keeps_the_output_name(self):
        rng = np.random.default_rng(0)
        net = Network("mlp")
        x = net.add_input("x", np.float32, ("batch", 16))
        y, _, _ = _mlp(net, x, rng, "mlp")
        net.mark_output(y)
        note = fuse_matmul_silu.run(net, _cuda_state())
        verify(net, "fuse_matmul_silu")
        assert note == "1 MatMul+Split+SiluMul chains fused"
        (layer,) = net.layers
        assert (layer.op_type, layer.domain) == (GLU, "dist_rt")
        assert [t.name for t in layer.inputs] == ["x", "mlp_w"]  # the weight keeps its name
        assert layer.outputs[0] is net.outputs[0] and net.outputs[0].shape == ("batch", 12)
        assert len(layer.metadata["fused_from"]) == 3

    def test_fires_only_where_it_should(self):
        """Two matches (rank 2, rank 3) among near misses: unequal halves, swapped
        gate/up, a half read twice, a half that is an output, a weight that is an input."""
        rng = np.random.default_rng(1)
        net = Network("misses")
        x = net.add_input("x", np.float32, (4, 16))
        outs = [_mlp(net, x, rng, "ok")[0],
                _mlp(net, x, rng, "uneven", split=[23, 1])[0],  # u broadcasts
                _mlp(net, x, rng, "swapped", swap=True)[0]]
        y, g, _ = _mlp(net, x, rng, "twice")
        outs += [y, net.add_activation(g, "Relu")]
        y, g, _ = _mlp(net, x, rng, "exposed")
        outs += [y, g]
        x3 = net.add_input("x3", np.float32, (2, 24, 16))
        outs.append(_mlp(net, x3, rng, "axis_ok", axis=2)[0])  # rank 3, last axis as 2
        wi = net.add_input("wi", np.float32, (16, 24))
        h = net.add_matmul(x, wi)
        g, u = net.add_layer("Split", [h], {"axis": 1, "num_outputs": 2},
                             name="w_input_split", outputs=["wi_g", "wi_u"]).outputs
        outs.append(net.add_layer("SiluMul", [g, u], name="w_input_gate",
                                  domain="dist_rt").outputs[0])
        for t in outs:
            net.mark_output(t)
        names = [t.name for t in net.outputs]
        note = fuse_matmul_silu.run(net, _cuda_state())
        verify(net, "fuse_matmul_silu")
        fused = sorted(lay.inputs[1].name for lay in net.layers if lay.op_type == GLU)
        assert fused == ["axis_ok_w", "ok_w"], note
        assert [t.name for t in net.outputs] == names

    def test_split_on_another_axis_is_kept(self):
        rng = np.random.default_rng(2)
        net = Network("axis")
        x = net.add_input("x", np.float32, (24, 16))
        w = net.add_constant("w", rng.standard_normal((16, 24)).astype(np.float32))
        h = net.add_matmul(x, w)
        g, u = net.add_layer("Split", [h], {"axis": 0, "num_outputs": 2}, name="rows",
                             outputs=["g", "u"]).outputs
        net.mark_output(net.add_layer("SiluMul", [g, u], name="gate",
                                      domain="dist_rt").outputs[0])
        assert fuse_matmul_silu.run(net, _cuda_state()).startswith("0 ")

    def test_off_unless_cuda(self):
        rng = np.random.default_rng(3)
        net = Network("mlp")
        x = net.add_input("x", np.float32, (2, 16))
        net.mark_output(_mlp(net, x, rng, "mlp")[0])
        devices = ["cpu"] + (["auto"] if resolve_device("auto") == "cpu" else [])
        for device in devices:
            note = fuse_matmul_silu.run(net, BuildState(BuilderConfig(device=device)))
            assert note.startswith("off") and _ops(net)[GLU] == 0


class TestLlama:
    @pytest.mark.parametrize("precision", ["fp32", "fp16"])
    def test_same_logits_as_unfused(self, monkeypatch, precision):
        """Every MLP is fused, and the logits are the unfused engine's, bit for bit (the
        reference rounds the product to the compute dtype as the unfused MatMul does)."""
        model = make_llama(TINY)
        unfused = Builder(BuilderConfig(precision=precision)).build(dist_rt.parse_onnx(model))
        monkeypatch.setattr(fuse_matmul_silu, "on_cuda", lambda state: True)
        fused = Builder(BuilderConfig(precision=precision, verify=True)).build(
            dist_rt.parse_onnx(model))
        ops = _ops(fused.network)
        assert ops[GLU] == TINY.layers and ops["SiluMul"] == 0
        assert ops["Split"] == _ops(unfused.network)["Split"] - TINY.layers
        for b, s in [(1, 1), (2, 5)]:
            feeds = sample_inputs(TINY, b, s)
            with unfused.create_execution_context() as c0, \
                    fused.create_execution_context() as c1:
                np.testing.assert_array_equal(c1.execute(feeds)["logits"],
                                              c0.execute(feeds)["logits"])

    def test_plan_file_round_trip(self, fuse_on_cpu, tmp_path):
        engine = Builder(BuilderConfig(precision="fp16")).build(
            dist_rt.parse_onnx(make_llama(TINY)))
        path = tmp_path / "glu.plan"
        engine.save(path)
        loaded = Engine.load(path)
        assert _ops(loaded.network)[GLU] == TINY.layers
        feeds = sample_inputs(TINY, 1, 3)
        with engine.create_execution_context() as c0, loaded.create_execution_context() as c1:
            np.testing.assert_array_equal(c1.execute(feeds)["logits"],
                                          c0.execute(feeds)["logits"])

    @pytest.mark.parametrize("level", [0, 1])
    def test_not_below_level_2(self, fuse_on_cpu, level):
        cfg = BuilderConfig(optimization_level=level, verify=True)
        engine = Builder(cfg).build(dist_rt.parse_onnx(make_llama(TINY)))
        assert _ops(engine.network)[GLU] == 0

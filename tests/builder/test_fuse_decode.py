"""Decode-step fusions (issue 5): merged projections, Add+RMSNorm, Attention output layout.

Each fused build is compared with the same build minus these three passes (fp32, 1e-5), on
Llama/GPT-2 from ``dist_rt.models`` and on the rank-local networks of a 2-rank plan.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import numpy as np
import pytest
from _builder_nets import LLAMA_IDS, LLAMA_PARAMS, llama_net, logits

import dist_rt
import sharding
from dist_rt import Builder, BuilderConfig
from dist_rt.builder.passes import fuse_add_rmsnorm, fuse_attention_layout, fuse_parallel_matmul
from dist_rt.errors import ShapeError
from dist_rt.models.gpt2 import GPT2Config, make_gpt2
from dist_rt.models.gpt2 import sample_inputs as gpt2_inputs
from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
from dist_rt.network import Network
from dist_rt.ops import RunContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "sharding"))
from mpi_worker import TEST_COST  # noqa: E402
from nets import run_network  # noqa: E402
from simulate import run_ranks  # noqa: E402

_NEW = (fuse_attention_layout, fuse_add_rmsnorm, fuse_parallel_matmul)


def _build(net, *, new_passes=True, level=2, **kw):
    """Build at ``level``; ``new_passes=False`` turns this file's three passes into no-ops."""
    cfg = BuilderConfig(optimization_level=level, verify=True, **kw)
    if new_passes:
        return Builder(cfg).build(net)
    with pytest.MonkeyPatch.context() as mp:
        for mod in _NEW:
            mp.setattr(mod, "run", lambda n, s: "off")
        return Builder(cfg).build(net)


def _ops(engine) -> Counter:
    return Counter(lay.op_type for lay in engine.network.layers)


@pytest.fixture(scope="module", params=LLAMA_PARAMS, ids=LLAMA_IDS)
def llama(request):
    return llama_net(*request.param)


class TestLlama:
    def test_rewrite_counts(self, llama):
        cfg, net = llama
        notes = []
        engine = Builder(BuilderConfig(verify=True), progress=notes.append).build(net)
        base, ops = _ops(_build(net, new_passes=False)), _ops(engine)
        n = cfg.layers
        assert ops["MatMul"] == base["MatMul"] - 3 * n  # q/k/v -> 1, gate/up -> 1
        assert ops["Split"] == base["Split"] + 2 * n
        assert ops["AddRMSNorm"] == 2 * n and ops["Add"] == base["Add"] - 2 * n
        assert ops["Transpose"] == base["Transpose"] - n
        assert ops["SiluMul"] == ops["Attention"] == ops["RotaryHalfPair"] == n
        att = [lay for lay in engine.network.layers if lay.op_type == "Attention"]
        assert all(lay.attr("output_layout") == "bshd" for lay in att)
        log = "\n".join(notes)
        assert f"{5 * n} MatMuls merged into {2 * n}" in log
        assert f"{2 * n} Add+RMSNorm pairs fused" in log
        assert f"{n} attention output transposes folded" in log

    @pytest.mark.parametrize("batch, seq", [(1, 1), (2, 7)])
    def test_matches_unfused(self, llama, batch, seq):
        cfg, net = llama
        feeds = sample_inputs(cfg, batch, seq)
        ref = logits(_build(net, new_passes=False), feeds)
        np.testing.assert_allclose(logits(_build(net), feeds), ref, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(logits(_build(net, level=0), feeds), ref, atol=1e-4,
                                   rtol=1e-4)

    def test_fp16_close(self, llama):
        cfg, net = llama
        feeds = sample_inputs(cfg, 2, 5)
        ref = logits(_build(net, new_passes=False, precision="fp16"), feeds)
        out = logits(_build(net, precision="fp16"), feeds)
        assert np.max(np.abs(out - ref)) <= 0.01 * (1 + np.max(np.abs(ref)))

    def test_level_1_leaves_patterns(self, llama):
        _, net = llama
        ops = _ops(_build(net, level=1))
        assert ops["AddRMSNorm"] == ops["Split"] == 0


def test_gpt2_untouched_and_equal():
    """GPT-2 already has one c_attn GEMM and unfused attention: nothing to do, same logits."""
    cfg = GPT2Config(layers=2)
    net = dist_rt.parse_onnx(make_gpt2(cfg))
    feeds = gpt2_inputs(cfg, 2, 5)
    fused, plain = _build(net), _build(net, new_passes=False)
    assert _ops(fused) == _ops(plain)
    np.testing.assert_allclose(logits(fused, feeds), logits(plain, feeds), atol=1e-5)


def test_sharded_partitions_match():
    """2-rank plan: every rank's local network fuses, and fused == unfused on every rank."""
    cfg = LlamaConfig(vocab=128, hidden=64, heads=8, kv_heads=4, mlp=128, layers=2,
                      max_seq=32)
    plan = sharding.plan(dist_rt.parse_onnx(make_llama(cfg)), 2, cost_model=TEST_COST)
    feeds = sample_inputs(cfg, 2, 5)
    # Built here, not in the rank threads: _build(new_passes=False) monkeypatches modules.
    built = {new: [_build(plan.partition(r), new_passes=new) for r in range(2)]
             for new in (False, True)}

    def runner(new_passes):
        def run(local, f, rt):
            return run_network(built[new_passes][rt.rank].network, f, rt)
        return run

    ref = run_ranks(plan, feeds, runner(False))
    out = run_ranks(plan, feeds, runner(True))
    for a, b in zip(out, ref, strict=True):
        np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5, rtol=1e-5)
    for engine, plain in zip(built[True], built[False], strict=True):
        ops, base = _ops(engine), _ops(plain)
        # The final norm runs over a sharded hidden dim here (a collective inside it), so
        # it stays unfused; every block's norm fuses with its residual Add.
        assert ops["AddRMSNorm"] + ops["RMSNormalization"] == base["RMSNormalization"]
        assert ops["AddRMSNorm"] >= 2 * cfg.layers - 1
        assert ops["Split"] >= 2 * cfg.layers  # the local weight slices merge too


def _parallel_net(opset: int, shared: bool) -> tuple[Network, dict]:
    rng = np.random.default_rng(0)
    net = Network("par", opset=opset)
    x = net.add_input("x", np.float32, (3, 8))
    ws = [net.add_constant(f"w{i}", rng.standard_normal((8, n)).astype(np.float32))
          for i, n in enumerate((5, 7, 5))]
    for w in ws:
        net.mark_output(net.add_matmul(x, w))
    if shared:  # w0 also read by another activation: merging would keep two copies
        y = net.add_input("y", np.float32, (2, 8))
        net.mark_output(net.add_matmul(y, ws[0]))
    return net, {"x": rng.standard_normal((3, 8)).astype(np.float32),
                 "y": rng.standard_normal((2, 8)).astype(np.float32)}


class TestParallelMatMul:
    @pytest.mark.parametrize("opset", [11, 18])
    def test_merge_and_split_form(self, opset):
        net, feeds = _parallel_net(opset, shared=False)
        out = run_network(_build(net).network, feeds)
        ref = run_network(net, feeds)
        for k in ref:
            np.testing.assert_allclose(out[k], ref[k], atol=1e-5)
        (split,) = [lay for lay in _build(net).network.layers if lay.op_type == "Split"]
        assert (split.attr("split") == [5, 7, 5]) == (opset < 13)
        assert len(split.inputs) == (2 if opset >= 13 else 1)

    @pytest.mark.parametrize("threaded", [False, True])
    def test_merged_weight_is_the_concatenation(self, threaded, monkeypatch):
        from dist_rt.builder.passes import fuse_util  # noqa: PLC0415
        from dist_rt.builder.refit import WEIGHT_SOURCES  # noqa: PLC0415

        if threaded:  # the threaded copy, whatever the size of this small network
            monkeypatch.setattr(fuse_util, "_PARALLEL_CONCAT_BYTES", 0)
        net, _ = _parallel_net(18, shared=False)
        built = _build(net).network
        (mm,) = [lay for lay in built.layers if lay.op_type == "MatMul"]
        merged = mm.inputs[1].weights.numpy()
        want = np.concatenate([net.tensors[f"w{i}"].weights.numpy() for i in range(3)], axis=1)
        assert merged.dtype == want.dtype and merged.tobytes() == want.tobytes()
        assert built.metadata[WEIGHT_SOURCES][mm.inputs[1].name] == [
            {"source": f"w{i}", "axis": -1, "offset": off, "size": n}
            for i, (off, n) in enumerate([(0, 5), (5, 7), (12, 5)])]

    def test_shared_weight_left_alone(self):
        net, feeds = _parallel_net(18, shared=True)
        ops = _ops(_build(net))
        assert ops["MatMul"] == 3 and ops["Split"] == 1  # w1, w2 merged; w0 kept
        out, ref = run_network(_build(net).network, feeds), run_network(net, feeds)
        for k in ref:
            np.testing.assert_allclose(out[k], ref[k], atol=1e-5)


class TestOps:
    def _layer(self, op, inputs, attrs, n_out=1):
        net = Network("op")
        net.opsets["dist_rt"] = 1
        ins = [net.add_input(f"i{i}", a.dtype, a.shape) for i, a in enumerate(inputs)]
        return net.add_layer(op, ins, attrs, domain="dist_rt", outputs=n_out)

    @pytest.mark.parametrize("dtype", [np.float32, np.float16])
    def test_add_rms_norm(self, dtype):
        rng = np.random.default_rng(1)
        a, b = (rng.standard_normal((2, 3, 16)).astype(dtype) for _ in range(2))
        w = rng.standard_normal(16).astype(dtype)
        lay = self._layer("AddRMSNorm", [a, b, w], {"epsilon": 1e-6}, n_out=2)
        assert [t.shape for t in lay.outputs] == [(2, 3, 16)] * 2
        s, y = lay.op.run(lay, [a, b, w], RunContext())
        s32 = (a + b).astype(np.float32)  # the sum rounded to dtype, statistics in fp32
        ref = s32 / np.sqrt((s32 ** 2).mean(-1, keepdims=True) + 1e-6) * w.astype(np.float32)
        assert s.dtype == y.dtype == dtype
        np.testing.assert_array_equal(s, a + b)
        np.testing.assert_allclose(y.astype(np.float32), ref, rtol=1e-5 if dtype == np.float32
                                   else 2e-3, atol=1e-5 if dtype == np.float32 else 2e-3)

    def test_attention_bshd(self):
        rng = np.random.default_rng(2)
        q = rng.standard_normal((2, 4, 3, 8)).astype(np.float32)
        k, v = (rng.standard_normal((2, 2, 5, 8)).astype(np.float32) for _ in range(2))
        attrs = {"num_heads": 4, "kv_num_heads": 2, "causal": 1}
        base = self._layer("Attention", [q, k, v], attrs)
        lay = self._layer("Attention", [q, k, v], {**attrs, "output_layout": "bshd"})
        assert lay.outputs[0].shape == (2, 3, 4, 8)
        (ref,) = base.op.run(base, [q, k, v], RunContext())
        (out,) = lay.op.run(lay, [q, k, v], RunContext())
        np.testing.assert_array_equal(out, ref.transpose(0, 2, 1, 3))

    def test_attention_bad_layout(self):
        q = np.zeros((1, 2, 3, 4), np.float32)
        with pytest.raises(ShapeError, match="output_layout 'sbhd'"):
            self._layer("Attention", [q, q, q], {"output_layout": "sbhd"})


@pytest.mark.gpu
def test_cuda_matches_cpu():
    """CUDA: Split views, AddRMSNorm wrapper and bshd Attention (decode and long paths)."""
    cfg = LlamaConfig(layers=2, heads=8, kv_heads=4, hidden=64, mlp=96, vocab=50, max_seq=64)
    net = dist_rt.parse_onnx(make_llama(cfg))
    for batch, seq in [(1, 1), (2, 40)]:
        feeds = sample_inputs(cfg, batch, seq)
        ref = logits(_build(net, new_passes=False), feeds)
        out = logits(_build(net, device="cuda"), feeds)
        np.testing.assert_allclose(out, ref, atol=1e-3, rtol=1e-3)

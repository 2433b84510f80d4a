"""CUDA decode GEMV (runtime/cuda/gemv.py) and its PDL launches (runtime/cuda/launch.py).

Reference: NumPy float64 products of the same 16-bit values. The kernel multiplies exactly
in float32 and accumulates in float32 (another order than NumPy), then rounds once: within
float32 accumulation error plus one rounding to the output type.

Also: the CUDA backend stores MatMul weights (N, K) and every layer still computes the same
values (engine vs the CPU engine, eager and graph-replayed); chains of PDL launches
replayed from a CUDA graph see their predecessors' writes.
"""

from __future__ import annotations

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig, dtypes
from dist_rt.network import Network

pytestmark = pytest.mark.gpu

DTYPES = {"float16": np.dtype(np.float16), "bfloat16": dtypes.bfloat16}
#: One rounding of an O(1) result to the output type.
ROUND = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 0.0}


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def gv(cp):
    from dist_rt.runtime.cuda import gemv

    return gemv


def _operands(cp, rng, m, k, n, dtype):
    """Host x (M, K), W (K, N), and device x and the (K, N) view of W stored (N, K)."""
    x = rng.standard_normal((m, k)).astype(np.float32).astype(dtype)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32).astype(dtype)
    w_dev = cp.ascontiguousarray(cp.asarray(w).T).T
    return x, w, cp.asarray(x), w_dev


def _check(y, x, w, out_name):
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = x64 @ w64
    bound = np.abs(x64) @ np.abs(w64)
    err = np.abs(y.astype(np.float64) - want)
    allowed = 2 * x.shape[1] * 2.0**-24 * bound + ROUND[out_name] * np.abs(want) + 1e-6
    assert np.all(err <= allowed), float(np.max(err - allowed))


SHAPES = [(1, 2048, 3072),   # 1B q/k/v merged
          (2, 5632, 2048),   # 1B down, two rows
          (1, 264, 1000),    # K not a multiple of 32 x 8, odd N
          (2, 4096, 777),    # two rows, N not a multiple of 8 warps
          (1, 8, 1),         # one chunk, one column
          (1, 1032, 9)]      # a last pass with one chunk a lane


class TestGemv:
    @pytest.mark.parametrize("m, k, n", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
    @pytest.mark.parametrize("dtype", sorted(DTYPES))
    @pytest.mark.parametrize("out", ["same", "float32"])
    def test_matches_numpy(self, cp, gv, m, k, n, dtype, out):
        rng = np.random.default_rng(m * 7919 + k + n)
        x, w, xd, wd = _operands(cp, rng, m, k, n, DTYPES[dtype])
        y = gv.gemv(xd, wd, out_dtype=None if out == "same" else np.float32)
        assert y is not None and y.shape == (m, n)
        assert y.dtype == (DTYPES[dtype] if out == "same" else np.float32)
        _check(cp.asnumpy(y).astype(np.float32), x, w, dtype if out == "same" else "float32")

    @pytest.mark.parametrize("splits", [1, 2, 4])
    @pytest.mark.parametrize("m, k, n", [(1, 5632, 300), (2, 1032, 17), (1, 264, 40)],
                             ids=["6_passes", "2_passes", "1_pass"])
    def test_every_split(self, cp, gv, m, k, n, splits):
        """KS warps a column, including more warps than the column has passes."""
        rng = np.random.default_rng(k + splits)
        x, w, xd, wd = _operands(cp, rng, m, k, n, np.float16)
        y = gv.gemv(xd, wd, splits=splits)
        _check(cp.asnumpy(y).astype(np.float32), x, w, "float16")

    def test_default_splits(self, gv):
        assert [gv.default_splits(k) for k in (1024, 2048, 4096, 5632, 7168, 14336)] == \
            [1, 2, 2, 2, 4, 4]

    def test_strided_rows(self, cp, gv):
        """Rows of x a whole number of 16-byte chunks apart (a Split's view of a wider row)."""
        rng = np.random.default_rng(3)
        wide = rng.standard_normal((2, 1024 + 64)).astype(np.float16)
        x = cp.asarray(wide)[:, 64:]
        _, w, _, wd = _operands(cp, rng, 2, 1024, 300, np.float16)
        y = gv.gemv(x, wd)
        assert y is not None
        _check(cp.asnumpy(y), wide[:, 64:], w, "float16")

    def test_pdl_off_gives_the_same_bits(self, cp, gv, monkeypatch):
        rng = np.random.default_rng(5)
        _, _, xd, wd = _operands(cp, rng, 2, 2048, 1536, np.float16)
        with_pdl = cp.asnumpy(gv.gemv(xd, wd))
        monkeypatch.setenv("DIST_RT_PDL", "0")
        without = cp.asnumpy(gv.gemv(xd, wd))
        np.testing.assert_array_equal(with_pdl.view(np.uint16), without.view(np.uint16))

    @pytest.mark.parametrize("case", ["three_rows", "float32", "k_odd", "row_major_w",
                                      "misaligned_x", "mixed_dtypes", "empty_n"])
    def test_declines(self, cp, gv, case):
        rng = np.random.default_rng(11)
        m, k, n, dtype = 1, 256, 64, np.float16
        if case == "three_rows":
            m = 3
        if case == "float32":
            dtype = np.float32
        if case == "k_odd":
            k = 260
        if case == "empty_n":
            n = 0
        _, w, xd, wd = _operands(cp, rng, m, k, n, dtype)
        if case == "row_major_w":
            wd = cp.asarray(w)
        if case == "misaligned_x":
            xd = cp.asarray(rng.standard_normal((1, k + 4)).astype(dtype))[:, 4:]
        if case == "mixed_dtypes":
            xd = xd.astype(dtypes.bfloat16)
        assert gv.gemv(xd, wd) is None

    def test_graph_replay_chain(self, cp, gv):
        """Three dependent PDL GEMVs captured once, replayed after x changes in place:
        each must read its predecessor's fresh output."""
        rng = np.random.default_rng(17)
        ws = [cp.ascontiguousarray(cp.asarray(
            (rng.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float16)).T).T
            for _ in range(3)]
        x = cp.asarray(rng.standard_normal((1, 512)).astype(np.float16))

        def chain():
            y = x
            for w in ws:
                y = gv.gemv(y, w)
            return y

        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            chain()
            stream.begin_capture()
            y = chain()
            graph = stream.end_capture()
            for trial in range(3):
                x[...] = cp.asarray(rng.standard_normal((1, 512)).astype(np.float16))
                graph.launch(stream)
                stream.synchronize()
                want = chain()
                stream.synchronize()
                np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want), err_msg=trial)


class TestLaunch:
    def test_bad_argument_type(self, cp, gv):
        from dist_rt.runtime.cuda import launch

        kernel = gv._module().get_function("gemv_nk<h16, h16, 1, 1, 0>")
        with pytest.raises(TypeError, match="unsupported kernel argument 'x' \\(str\\)"):
            launch.launch(kernel, 1, 256, ["x"])
        with pytest.raises(TypeError, match="int8"):
            launch.launch(kernel, 1, 256, [np.int8(1)])


def _matmul_net(k, n, relu=False, share_with_gather=False):
    """float32 x (B, S, K) @ W (K, N) [-> Relu], optionally W also read by a Gather.

    Built at fp16, the bare product becomes ``MatMulCast`` (fp16 operands, float32 y) and
    the one before Relu stays a ``MatMul``.
    """
    rng = np.random.default_rng(k + n)
    net = Network("mm")
    x = net.add_input("x", np.float32, ("B", "S", k))
    w = net.add_constant("w", (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32))
    y = net.add_layer("MatMul", [x, w], name="mm", outputs=["mm_y" if relu else "y"]).outputs[0]
    if relu:
        y = net.add_layer("Relu", [y], name="relu", outputs=["y"]).outputs[0]
    net.mark_output(y)
    if share_with_gather:
        idx = net.add_input("idx", np.int64, (2,))
        net.mark_output(net.add_layer("Gather", [w, idx], {"axis": 0}, name="rows",
                                      outputs=["rows"]).outputs[0])
    return net


class TestTransposedWeights:
    @pytest.mark.parametrize("relu", [False, True], ids=["matmul_cast", "matmul"])
    def test_engine_matches_cpu(self, cp, relu):
        from dist_rt.runtime.cuda.gemv import transposed_view

        net = _matmul_net(264, 300, relu=relu)
        gpu = Builder(BuilderConfig(device="cuda", precision="fp16")).build(net)
        ops = {lay.op_type for lay in gpu.network.layers}
        assert ("MatMul" if relu else "MatMulCast") in ops
        cpu = Builder(BuilderConfig(precision="fp16", optimization_level=0)).build(net)
        rng = np.random.default_rng(1)
        with cpu.create_execution_context() as c0, gpu.create_execution_context() as c1:
            assert transposed_view(c1._constants["w"])
            for b, s in [(1, 1), (1, 2), (2, 2), (3, 7)]:  # GEMV at 1 and 2 rows, else cuBLAS
                feeds = {"x": rng.standard_normal((b, s, 264)).astype(np.float32)}
                want = c0.execute(feeds)["y"]
                for _ in range(3):  # eager, capture, replay
                    got = c1.execute(feeds)["y"]
                    np.testing.assert_allclose(got, want, atol=2e-2, rtol=2e-2)

    def test_weight_read_by_gather_keeps_its_layout(self, cp):
        net = _matmul_net(64, 48, share_with_gather=True)
        gpu = Builder(BuilderConfig(device="cuda", precision="fp16")).build(net)
        w16 = net.tensors["w"].weights.numpy().astype(np.float16).astype(np.float32)
        with gpu.create_execution_context() as ctx:
            assert ctx._constants["w"].flags.c_contiguous
            out = ctx.execute({"x": np.ones((1, 1, 64), np.float32),
                               "idx": np.array([0, 3], np.int64)})
            np.testing.assert_array_equal(out["rows"], w16[[0, 3]])

    def test_llama_decode_uses_the_gemv(self, cp, monkeypatch):
        from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
        from dist_rt.runtime.cuda import gemv

        calls = []
        real = gemv.gemv

        def spy(a, b, out_dtype=None, **kw):
            y = real(a, b, out_dtype, **kw)
            calls.append(y is not None)
            return y

        monkeypatch.setattr(gemv, "gemv", spy)
        cfg = LlamaConfig(hidden=256, layers=2, heads=4, kv_heads=2, mlp=512, vocab=1003)
        net = dist_rt.parse_onnx(make_llama(cfg))
        gpu = Builder(BuilderConfig(device="cuda", precision="fp16")).build(net)
        cpu = Builder(BuilderConfig(precision="fp16", optimization_level=0)).build(net)
        feeds = sample_inputs(cfg, 1, 1)
        with cpu.create_execution_context() as c0, gpu.create_execution_context() as c1:
            c1.use_cuda_graph = False
            want = c0.execute(feeds)["logits"]
            got = c1.execute(feeds)["logits"]
        assert np.max(np.abs(got - want)) <= 1e-2 * (1 + np.max(np.abs(want)))
        # q/k/v, o, gate/up, down per layer and the head, all on the GEMV
        assert calls and all(calls) and len(calls) == 4 * cfg.layers + 1


def _weight(cp, rng, k, n):
    return cp.ascontiguousarray(cp.asarray(
        (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float16)).T).T


class TestL2Prefetch:
    """The GEMV's L2 prefetch of the next weight (runtime/cuda/l2_prefetch.py): a hint that
    must change no bit of any result, whatever its size or address."""

    @pytest.mark.parametrize("nbytes", [0, 16, 1000, 3 << 20, 1 << 40],
                             ids=["none", "one_unit", "not_16", "3MiB", "more_than_it_has"])
    def test_same_bits(self, cp, gv, nbytes):
        rng = np.random.default_rng(23)
        _, _, xd, wd = _operands(cp, rng, 2, 2048, 1536, np.float16)
        nxt = _weight(cp, rng, 2048, 5632)
        plain = cp.asnumpy(gv.gemv(xd, wd))
        warmed = cp.asnumpy(gv.gemv(xd, wd, prefetch=(nxt, nbytes)))
        np.testing.assert_array_equal(plain.view(np.uint16), warmed.view(np.uint16))

    def test_misaligned_target_is_ignored(self, cp, gv):
        rng = np.random.default_rng(29)
        _, _, xd, wd = _operands(cp, rng, 1, 1024, 512, np.float16)
        flat = cp.asarray(rng.standard_normal(4096).astype(np.float16))[1:]  # 2 bytes off
        plain = cp.asnumpy(gv.gemv(xd, wd))
        warmed = cp.asnumpy(gv.gemv(xd, wd, prefetch=(flat, flat.nbytes)))
        np.testing.assert_array_equal(plain.view(np.uint16), warmed.view(np.uint16))

    def test_graph_replay_chain(self, cp, gv):
        """Four dependent GEMVs, each warming the next one's weight (the last the first's),
        captured once and replayed after x changes in place."""
        rng = np.random.default_rng(31)
        ws = [_weight(cp, rng, 1024, 1024) for _ in range(4)]
        x = cp.asarray(rng.standard_normal((1, 1024)).astype(np.float16))

        def chain(warm):
            y = x
            for i, w in enumerate(ws):
                nxt = ws[(i + 1) % len(ws)]
                y = gv.gemv(y, w, prefetch=(nxt, nxt.nbytes) if warm else None)
            return y

        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            chain(True)
            stream.begin_capture()
            y = chain(True)
            graph = stream.end_capture()
            for trial in range(3):
                x[...] = cp.asarray(rng.standard_normal((1, 1024)).astype(np.float16))
                graph.launch(stream)
                stream.synchronize()
                want = chain(False)
                stream.synchronize()
                np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want), err_msg=trial)

    def test_budget(self, cp, monkeypatch):
        from dist_rt.runtime.cuda import l2_prefetch
        from dist_rt.runtime.cuda.device import capability

        l2 = int(cp.cuda.Device().attributes["L2CacheSize"])
        monkeypatch.setenv("DIST_RT_L2_PREFETCH_MIB", "0")
        assert l2_prefetch.budget_bytes() == 0
        monkeypatch.setenv("DIST_RT_L2_PREFETCH_MIB", "1.5")
        assert l2_prefetch.budget_bytes() == (3 << 19 if capability() >= 90 else 0)
        monkeypatch.setenv("DIST_RT_L2_PREFETCH_MIB", "100000")
        assert l2_prefetch.budget_bytes() == (l2 // 2 // 16 * 16 if capability() >= 90 else 0)
        monkeypatch.setenv("DIST_RT_L2_PREFETCH_MIB", "lots")
        default = int(l2_prefetch.DEFAULT_MIB * 2**20)
        assert l2_prefetch.budget_bytes() == (min(default, l2 // 2) // 16 * 16
                                              if capability() >= 90 else 0)

    def test_llama_engine(self, cp, monkeypatch):
        """Every decode GEMV of a Llama warms the next one's weight (the head layer 0's
        q/k/v), and the logits are the same bits with the prefetch off, eager and replayed."""
        from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
        from dist_rt.runtime.cuda.device import capability

        cfg = LlamaConfig(hidden=256, layers=2, heads=4, kv_heads=2, mlp=512, vocab=1003)
        gpu = Builder(BuilderConfig(device="cuda", precision="fp16")).build(
            dist_rt.parse_onnx(make_llama(cfg)))
        feeds = sample_inputs(cfg, 1, 1)
        outs = {}
        for mib in ("0", "4"):
            monkeypatch.setenv("DIST_RT_L2_PREFETCH_MIB", mib)
            with gpu.create_execution_context() as ctx:
                table = ctx._rt.l2_prefetch or {}
                if mib == "0" or capability() < 90:
                    assert table == {}
                else:
                    assert len(table) == 4 * cfg.layers + 1
                    weights = {id(a) for a in ctx._constants.values()}
                    assert all(id(a) in weights and 0 < n <= min(a.nbytes, 4 << 20)
                               for a, n in table.values())
                outs[mib] = [ctx.execute(feeds)["logits"] for _ in range(3)]
        for eager_or_replay in range(3):
            np.testing.assert_array_equal(outs["0"][eager_or_replay], outs["4"][eager_or_replay])


class TestSiluGate:
    """The gate/up GEMV writing silu(g) * u (``silu_gate``; dist_rt::MatMulSiluMul): the
    same bits as the plain GEMV's (M, 2I) output followed by the silu_mul8 kernel."""

    @pytest.mark.parametrize("splits", [None, 1, 2, 4])
    @pytest.mark.parametrize("m, k, half", [(1, 2048, 5632), (2, 4096, 1000), (1, 264, 9)],
                             ids=["1B_gate_up", "two_rows", "odd_half"])
    @pytest.mark.parametrize("dtype", sorted(DTYPES))
    def test_same_bits_as_unfused(self, cp, gv, m, k, half, splits, dtype):
        from dist_rt.runtime.cuda.kernels import silu_mul

        rng = np.random.default_rng(m + k + half)
        _, _, xd, wd = _operands(cp, rng, m, k, 2 * half, DTYPES[dtype])
        h = gv.gemv(xd, wd, splits=splits)
        (want,) = silu_mul(None, [h[:, :half], h[:, half:]], None)
        got = gv.gemv(xd, wd, splits=splits, silu_gate=True)
        assert got is not None and got.shape == (m, half) and got.dtype == DTYPES[dtype]
        np.testing.assert_array_equal(cp.asnumpy(got).view(np.uint16),
                                      cp.asnumpy(want).view(np.uint16))

    @pytest.mark.parametrize("rows", [1, 64])
    def test_tactics_match_the_default(self, cp, rows):
        """MatMulSiluMul's lt<i> tactics (cuBLASLt GEMM, then the gate) against its default
        path (the gate GEMV at one row, cuBLAS + silu_mul8 at 64): fp32 accumulation in
        another order, so within a 16-bit rounding."""
        from dist_rt.runtime.cuda import tactics
        from dist_rt.runtime.cuda.matmul_silu import matmul_silu_mul

        rng = np.random.default_rng(41 + rows)
        _, _, xd, wd = _operands(cp, rng, rows, 1024, 2 * 768, np.float16)
        (want,) = matmul_silu_mul(None, [xd, wd], None)
        runs = [t for t in tactics.TACTICS[("dist_rt", "MatMulSiluMul")] if t.run is not None]
        assert len(runs) == tactics.LT_TACTICS
        for tactic in runs[:3]:
            (got,) = tactic.run(None, [xd, wd], None)
            assert got.shape == (rows, 768) and got.dtype == np.float16
            np.testing.assert_allclose(cp.asnumpy(got).astype(np.float32),
                                       cp.asnumpy(want).astype(np.float32), rtol=2e-2,
                                       atol=2e-3, err_msg=tactic.name)

    @pytest.mark.parametrize("case", ["odd_columns", "float32_out"])
    def test_declines(self, cp, gv, case):
        rng = np.random.default_rng(37)
        _, _, xd, wd = _operands(cp, rng, 1, 256, 63 if case == "odd_columns" else 64,
                                 np.float16)
        out = np.float32 if case == "float32_out" else None
        assert gv.gemv(xd, wd, out_dtype=out, silu_gate=True) is None

    def test_llama_engine(self, cp, monkeypatch):
        """A CUDA Llama fuses every MLP's gate; its logits are the unfused engine's bits at
        decode (the gate GEMV) and at 2 x 5 tokens (cuBLAS + silu_mul8), eager and
        replayed, and close to the CPU engine's."""
        from dist_rt.builder.passes import fuse_matmul_silu
        from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs

        cfg = LlamaConfig(hidden=256, layers=2, heads=4, kv_heads=2, mlp=512, vocab=1003)
        net = dist_rt.parse_onnx(make_llama(cfg))
        fused = Builder(BuilderConfig(device="cuda", precision="fp16")).build(net)
        assert sum(lay.op_type == "MatMulSiluMul" for lay in fused.network.layers) == 2
        monkeypatch.setattr(fuse_matmul_silu, "on_cuda", lambda state: False)
        unfused = Builder(BuilderConfig(device="cuda", precision="fp16")).build(net)
        cpu = Builder(BuilderConfig(precision="fp16", optimization_level=0)).build(net)
        with fused.create_execution_context() as c1, unfused.create_execution_context() as c0, \
                cpu.create_execution_context() as ref:
            for b, s in [(1, 1), (2, 5)]:
                feeds = sample_inputs(cfg, b, s)
                want = ref.execute(feeds)["logits"]
                for _ in range(3):  # eager, capture, replay
                    got = c1.execute(feeds)["logits"]
                    np.testing.assert_array_equal(got, c0.execute(feeds)["logits"])
                assert np.max(np.abs(got - want)) <= 1e-2 * (1 + np.max(np.abs(want)))

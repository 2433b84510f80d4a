"""Tensor-core flash attention (dist_rt/runtime/cuda/flash.py) against a float64 reference
(inputs and reference: flash_ref.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flash_ref import AttentionLayer, assert_close, dtype_of, make_inputs, reference

pytestmark = pytest.mark.gpu

#: (S, Skv): self-attention, then S < Skv (end-aligned frontier) and S > Skv (rows of
#: causal queries that see no key come out zero).
SHAPES = [(s, s) for s in (17, 64, 100, 257)] + [(s, skv) for s in (17, 64, 100, 257)
                                                  for skv in (1, 17, 300) if skv != s]
#: The kernel variants: query rows a warp (one or two m16 tiles; 64 or 128 rows a CTA).
ROWS_PER_WARP = [16, 32]


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    if int(cupy.cuda.Device().compute_capability) < 80:
        pytest.skip("the tensor-core flash kernel needs sm_80+")
    return cupy


class TestFlashKernel:
    @pytest.mark.parametrize("s, skv", SHAPES)
    @pytest.mark.parametrize("causal", [True, False])
    @pytest.mark.parametrize("d", [64, 128])
    @pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
    @pytest.mark.parametrize("rows_per_warp", ROWS_PER_WARP)
    def test_matches_reference(self, cp, rows_per_warp, dtype_name, d, causal, s, skv):
        from dist_rt.runtime.cuda import flash

        rng = np.random.default_rng(s * 1000 + skv + d)
        (q, k, v), host = make_inputs(cp, rng, 2, 8, 2, s, skv, d, dtype_of(dtype_name))
        scale = 1 / math.sqrt(d)
        y = flash.flash_attention(q, k, v, scale, causal, rows_per_warp=rows_per_warp)
        assert y is not None and y.shape == (2, s, 8, d) and y.flags.c_contiguous
        assert_close(cp, y, reference(*host, scale, causal), dtype_name)

    @pytest.mark.parametrize("s, skv", [(200, 200), (200, 328), (200, 77)])
    @pytest.mark.parametrize("d", [16, 32, 48])
    @pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
    @pytest.mark.parametrize("rows_per_warp", ROWS_PER_WARP)
    def test_small_head_dims(self, cp, rows_per_warp, dtype_name, d, s, skv):
        from dist_rt.runtime.cuda import flash

        # D = 48: 6 16-byte chunks a row, which do not divide the 128 threads of a tile copy.
        rng = np.random.default_rng(d + skv)
        (q, k, v), host = make_inputs(cp, rng, 1, 4, 2, s, skv, d, dtype_of(dtype_name))
        y = flash.flash_attention(q, k, v, 0.2, True, rows_per_warp=rows_per_warp)
        assert_close(cp, y, reference(*host, 0.2, True), dtype_name)

    @pytest.mark.parametrize("hq, hkv", [(4, 4), (8, 2), (16, 4)])
    @pytest.mark.parametrize("s, skv", [(257, 257), (100, 300), (300, 100)])
    @pytest.mark.parametrize("rows_per_warp", ROWS_PER_WARP)
    def test_heads_contiguous_and_scale(self, cp, rows_per_warp, hq, hkv, s, skv):
        from dist_rt.runtime.cuda import flash

        rng = np.random.default_rng(hq + hkv)
        q, k, v = (rng.standard_normal(shape).astype(np.float16)
                   for shape in ((2, hq, s, 128), (2, hkv, skv, 128), (2, hkv, skv, 128)))
        y = flash.flash_attention(*(cp.asarray(x) for x in (q, k, v)), 0.05, True,
                                  rows_per_warp=rows_per_warp)
        assert_close(cp, y, reference(q, k, v, 0.05, True), "float16")

    @pytest.mark.parametrize("rows_per_warp", ROWS_PER_WARP)
    @pytest.mark.parametrize("causal", [True, False])
    def test_running_max_jumps(self, cp, rows_per_warp, causal):
        """Scores that grow along the keys by far more than the lazy rescale's 2^8 per tile
        (and a first tile far below the rest): the running max moves many times."""
        from dist_rt.runtime.cuda import flash

        rng = np.random.default_rng(7)
        s = 300
        q = np.ones((1, 2, s, 64), np.float32) / 8
        ramp = np.linspace(-30.0, 60.0, s, dtype=np.float32)[:, None]  # score = ramp
        k = np.broadcast_to(ramp, (1, 1, s, 64)).astype(np.float32) / 8
        v = rng.standard_normal((1, 1, s, 64)).astype(np.float32)
        q, k, v = (x.astype(np.float16) for x in (q, k, v))
        y = flash.flash_attention(*(cp.asarray(x) for x in (q, k, v)), 1.0, causal,
                                  rows_per_warp=rows_per_warp)
        assert_close(cp, y, reference(q, k, v, 1.0, causal), "float16")

    def test_default_variant_fills_the_gpu(self, cp, monkeypatch):
        from dist_rt.runtime.cuda import flash

        monkeypatch.setattr(flash, "sm_count", lambda: 132)  # H100 SXM
        # (batch, heads, queries, head dim) -> rows a warp, as measured (see the docstring)
        assert flash.default_rows_per_warp(8, 16, 2048, 128) == 32
        assert flash.default_rows_per_warp(1, 32, 2048, 128) == 32
        assert flash.default_rows_per_warp(1, 16, 2048, 128) == 16
        assert flash.default_rows_per_warp(1, 8, 2048, 128) == 16
        assert flash.default_rows_per_warp(2, 8, 1000, 64) == 16
        assert flash.default_rows_per_warp(4, 32, 1000, 64) == 32  # 4*32*8 = 1024 > 396
        assert flash.default_rows_per_warp(1, 1, 17, 128) == 16

    @pytest.mark.parametrize("rows_per_warp", [0, 8, 24, 64, 16.5, "16", None])
    def test_rejects_an_unknown_variant(self, cp, rows_per_warp):
        from dist_rt.runtime.cuda import flash

        q = cp.zeros((1, 2, 32, 64), dtype=cp.float16)
        with pytest.raises(ValueError, match="rows_per_warp"):
            flash.flash_attention(q, q, q, 0.125, True, rows_per_warp=rows_per_warp)
        with pytest.raises(ValueError, match="rows_per_warp"):
            flash.smem_bytes(64, rows_per_warp)

    def test_variants_have_their_own_kernels(self, cp):
        from dist_rt.runtime.cuda import flash

        assert flash.kernel_name("h16", 128, 16) == "flash_fwd_h16_d128"
        assert flash.kernel_name("b16", 64, 32) == "flash_fwd_b16_d64_m2"
        # With 32 rows a warp, Q's 128 rows get their own region; 2 CTAs fit an H100 SM.
        assert flash.smem_bytes(128, 16) == 4 * 64 * 136 * 2
        assert flash.smem_bytes(128, 32) == (4 * 64 + 128) * 136 * 2 <= 114 * 1024

    @pytest.mark.parametrize("rows_per_warp", ROWS_PER_WARP)
    def test_no_keys_gives_zeros(self, cp, rows_per_warp):
        from dist_rt.runtime.cuda import flash

        q = cp.ones((1, 2, 20, 64), dtype=cp.float16)
        k = cp.ones((1, 2, 0, 64), dtype=cp.float16)
        y = flash.flash_attention(q, k, k, 0.125, True, rows_per_warp=rows_per_warp)
        assert y.shape == (1, 20, 2, 64) and not bool(cp.any(y))

    @pytest.mark.parametrize("rows_per_warp", ROWS_PER_WARP)
    def test_unaligned_views_are_copied(self, cp, rows_per_warp):
        from dist_rt.runtime.cuda import flash

        # head dim 64 out of rows of 68: row strides not a multiple of 8 elements.
        rng = np.random.default_rng(9)
        buf = rng.standard_normal((1, 3, 70, 68)).astype(np.float16)
        dev = cp.asarray(buf)[..., 2:66]
        host = buf[..., 2:66]
        y = flash.flash_attention(dev, dev[:, :1], dev[:, 1:2], 0.125, True,
                                  rows_per_warp=rows_per_warp)
        assert_close(cp, y, reference(host, host[:, :1], host[:, 1:2], 0.125, True), "float16")

    @pytest.mark.parametrize("dtype, d, scale", [("float32", 64, 0.1), ("float16", 72, 0.1),
                                                 ("float16", 256, 0.1), ("float16", 64, 0.0)])
    def test_declines_what_it_does_not_cover(self, cp, dtype, d, scale):
        from dist_rt.runtime.cuda import flash

        q = cp.zeros((1, 2, 32, d), dtype=dtype)
        assert flash.flash_attention(q, q, q, scale, False) is None

    @pytest.mark.parametrize("rows_per_warp", ROWS_PER_WARP)
    def test_graph_capture(self, cp, rows_per_warp):
        from dist_rt.runtime.cuda import flash

        rng = np.random.default_rng(4)
        (q, k, v), _ = make_inputs(cp, rng, 2, 8, 2, 100, 100, 128, np.float16)
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            want = flash.flash_attention(q, k, v, 0.1, True, rows_per_warp=rows_per_warp)
            stream.begin_capture()  # compiled eagerly, above
            y = flash.flash_attention(q, k, v, 0.1, True, rows_per_warp=rows_per_warp)
            graph = stream.end_capture()
            y.fill(0)
            graph.launch(stream)
            stream.synchronize()
        np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want))


class TestAttentionDispatch:
    @pytest.mark.parametrize("layout", ["bhsd", "bshd"])
    @pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
    @pytest.mark.parametrize("sms, rows_per_warp", [(132, 16), (8, 32)])
    def test_long_queries_take_the_default_variant(self, cp, monkeypatch, layout, dtype_name,
                                                    sms, rows_per_warp):
        """2 x 16 heads x 100 queries is 32 CTAs of the 32-row kernel: less than one wave on
        132 SMs (the 16-row kernel runs), more than one on 8 (the 32-row kernel runs)."""
        from dist_rt.runtime.cuda import flash, kernels

        monkeypatch.setattr(flash, "sm_count", lambda: sms)
        _without_wgmma(monkeypatch)
        calls = []
        real = flash.flash_attention
        monkeypatch.setattr(flash, "flash_attention",
                            lambda *a, **kw: calls.append(kw.get("rows_per_warp"))
                            or real(*a, **kw))
        rng = np.random.default_rng(5)
        (q, k, v), host = make_inputs(cp, rng, 2, 16, 4, 100, 100, 128, dtype_of(dtype_name))
        layer = AttentionLayer(causal=1, num_heads=16, kv_num_heads=4, output_layout=layout)
        (y,) = kernels.attention(layer, [q, k, v], None)
        assert calls == [rows_per_warp]
        want = reference(*host, 1 / math.sqrt(128), True)
        assert_close(cp, y if layout == "bshd" else y.transpose(0, 2, 1, 3), want, dtype_name)

    @pytest.mark.parametrize("path, rows_per_warp", [("tc", 16), ("tc2", 32)])
    def test_path_picks_the_variant(self, cp, monkeypatch, path, rows_per_warp):
        from dist_rt.runtime.cuda import flash, kernels

        calls = []
        real = flash.flash_attention
        monkeypatch.setattr(flash, "flash_attention",
                            lambda *a, **kw: calls.append(kw.get("rows_per_warp"))
                            or real(*a, **kw))
        rng = np.random.default_rng(8)
        (q, k, v), host = make_inputs(cp, rng, 1, 8, 2, 150, 150, 128, np.float16)
        layer = AttentionLayer(causal=1, num_heads=8, kv_num_heads=2, output_layout="bshd")
        (y,) = kernels.attention(layer, [q, k, v], None, path=path)
        assert calls == [rows_per_warp]
        assert_close(cp, y, reference(*host, 1 / math.sqrt(128), True), "float16")

    def test_uncovered_falls_back(self, cp):
        from dist_rt.runtime.cuda import kernels

        rng = np.random.default_rng(6)
        q, k, v = (rng.standard_normal((1, 2, 40, 72)).astype(np.float16) for _ in range(3))
        (y,) = kernels.attention(AttentionLayer(causal=1), [cp.asarray(x) for x in (q, k, v)], None,
                                 path="tc")
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float64),
                                   reference(q, k, v, 1 / math.sqrt(72), True), atol=1e-2)

    @pytest.mark.parametrize("path", [None, "wg"])
    def test_hopper_takes_the_wgmma_kernel(self, cp, monkeypatch, path):
        from dist_rt.runtime.cuda import flash, flash_wgmma, kernels

        if not flash_wgmma.available():
            pytest.skip("the wgmma kernel runs on sm_90 only")
        calls = []
        real = flash_wgmma.flash_attention
        monkeypatch.setattr(flash_wgmma, "flash_attention",
                            lambda *a, **kw: calls.append(1) or real(*a, **kw))
        monkeypatch.setattr(flash, "flash_attention", None)  # never reached
        rng = np.random.default_rng(12)
        (q, k, v), host = make_inputs(cp, rng, 1, 8, 2, 150, 150, 128, np.float16)
        layer = AttentionLayer(causal=1, num_heads=8, kv_num_heads=2, output_layout="bshd")
        (y,) = kernels.attention(layer, [q, k, v], None, path=path)
        assert calls == [1]
        assert_close(cp, y, reference(*host, 1 / math.sqrt(128), True), "float16")

    def test_wg_path_elsewhere_runs_the_mma_sync_kernel(self, cp, monkeypatch):
        from dist_rt.runtime.cuda import kernels

        _without_wgmma(monkeypatch)
        rng = np.random.default_rng(13)
        (q, k, v), host = make_inputs(cp, rng, 1, 8, 2, 150, 150, 128, np.float16)
        (y,) = kernels.attention(AttentionLayer(causal=1, output_layout="bshd"), [q, k, v], None,
                                 path="wg")
        assert_close(cp, y, reference(*host, 1 / math.sqrt(128), True), "float16")

    def test_tactic_tc_is_selectable(self, cp, monkeypatch):
        from dist_rt.builder import tactics
        from dist_rt.network import Network
        from dist_rt.runtime.cuda import flash

        rng = np.random.default_rng(7)
        q = rng.standard_normal((1, 4, 8, 64)).astype(np.float16)  # decode-sized: not default
        k, v = (rng.standard_normal((1, 2, 90, 64)).astype(np.float16) for _ in range(2))
        net = Network("one")
        ins = [net.add_constant(f"in{i}", a) for i, a in enumerate((q, k, v))]
        layer = net.add_layer("Attention", ins, {"causal": 1}, domain="dist_rt")
        specs = [(a.shape, a.dtype) for a in (q, k, v)]
        assert "tc" in [t.name for t in tactics.applicable("cuda", layer, specs)]
        calls = []
        real = flash.flash_attention
        monkeypatch.setattr(flash, "flash_attention",
                            lambda *a, **kw: calls.append(1) or real(*a, **kw))
        out = tactics.run_tactic("cuda", layer, "tc", [cp.asarray(x) for x in (q, k, v)], None)
        assert calls == [1]
        assert_close(cp, out[0].transpose(0, 2, 1, 3), reference(q, k, v, 0.125, True),
                     "float16")


def _without_wgmma(monkeypatch) -> None:
    """Make the dispatch behave as on a GPU without the Hopper kernel (anything but sm_90)."""
    from dist_rt.runtime.cuda import flash_wgmma

    monkeypatch.setattr(flash_wgmma, "available", lambda: False)

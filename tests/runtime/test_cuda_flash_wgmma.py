"""Hopper wgmma flash attention (dist_rt/runtime/cuda/flash_wgmma.py) against a float64
reference (inputs and reference: flash_ref.py), and its tensor maps (tma.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flash_ref import AttentionLayer, assert_close, dtype_of, make_inputs, reference

pytestmark = pytest.mark.gpu

#: (S, Skv): one partial tile, several 128-row tiles with a ragged end, S < Skv and S > Skv.
SHAPES = [(17, 17), (128, 128), (300, 300), (1000, 1000), (100, 300), (300, 100),
          (130, 1), (64, 777)]


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    if int(cupy.cuda.Device().compute_capability) != 90:
        pytest.skip("the wgmma kernel runs on sm_90 (H100, H200) only")
    return cupy


@pytest.fixture(scope="module")
def fw(cp):
    from dist_rt.runtime.cuda import flash_wgmma

    return flash_wgmma


class TestWgmmaKernel:
    @pytest.mark.parametrize("s, skv", SHAPES)
    @pytest.mark.parametrize("causal", [True, False])
    @pytest.mark.parametrize("d", [64, 128])
    @pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
    @pytest.mark.parametrize("copies", ["cp.async", "tma"])
    def test_matches_reference(self, cp, fw, copies, dtype_name, d, causal, s, skv):
        rng = np.random.default_rng(s * 1000 + skv + d)
        (q, k, v), host = make_inputs(cp, rng, 2, 4, 2, s, skv, d, dtype_of(dtype_name))
        scale = 1 / math.sqrt(d)
        y = fw.flash_attention(q, k, v, scale, causal, variant=fw.Variant(tma=copies == "tma"))
        assert y is not None and y.shape == (2, s, 4, d) and y.flags.c_contiguous
        assert_close(cp, y, reference(*host, scale, causal), dtype_name)

    @pytest.mark.parametrize("variant", [(2, True, True), (2, True, False), (2, False, False),
                                         (3, False, True), (3, True, False), (3, False, True, True),
                                         (2, True, False, True)])
    @pytest.mark.parametrize("causal", [True, False])
    def test_variants(self, cp, fw, variant, causal):
        rng = np.random.default_rng(3)
        (q, k, v), host = make_inputs(cp, rng, 1, 8, 2, 520, 520, 128, np.float16)
        y = fw.flash_attention(q, k, v, 0.09, causal, variant=fw.Variant(*variant))
        assert_close(cp, y, reference(*host, 0.09, causal), "float16")

    @pytest.mark.parametrize("hq, hkv", [(4, 4), (8, 2), (16, 4), (6, 1)])
    def test_gqa_heads_and_contiguous_inputs(self, cp, fw, hq, hkv):
        rng = np.random.default_rng(hq + hkv)
        q, k, v = (rng.standard_normal(shape).astype(np.float16)
                   for shape in ((1, hq, 257, 128), (1, hkv, 257, 128), (1, hkv, 257, 128)))
        y = fw.flash_attention(*(cp.asarray(x) for x in (q, k, v)), 0.05, True)
        assert_close(cp, y, reference(q, k, v, 0.05, True), "float16")

    @pytest.mark.parametrize("lazy", [True, False])
    @pytest.mark.parametrize("causal", [True, False])
    def test_running_max_jumps(self, cp, fw, lazy, causal):
        """Scores growing along the keys far faster than the lazy rescale's 2^8 a tile."""
        rng = np.random.default_rng(7)
        s = 600
        q = np.ones((1, 2, s, 64), np.float32) / 8
        ramp = np.linspace(-30.0, 60.0, s, dtype=np.float32)[:, None]  # score = ramp
        k = np.broadcast_to(ramp, (1, 1, s, 64)).astype(np.float32) / 8
        v = rng.standard_normal((1, 1, s, 64)).astype(np.float32)
        q, k, v = (x.astype(np.float16) for x in (q, k, v))
        y = fw.flash_attention(*(cp.asarray(x) for x in (q, k, v)), 1.0, causal,
                               variant=fw.Variant(lazy=lazy))
        assert_close(cp, y, reference(q, k, v, 1.0, causal), "float16")

    def test_same_result_as_the_mma_sync_kernel(self, cp, fw):
        """Both kernels round P to 16 bits the same way: they agree far inside the tolerance
        to the float64 reference."""
        from dist_rt.runtime.cuda import flash

        rng = np.random.default_rng(11)
        (q, k, v), _ = make_inputs(cp, rng, 2, 8, 2, 700, 700, 128, np.float16)
        y = cp.asnumpy(fw.flash_attention(q, k, v, 0.088, True)).astype(np.float32)
        want = cp.asnumpy(flash.flash_attention(q, k, v, 0.088, True, rows_per_warp=32))
        np.testing.assert_allclose(y, want.astype(np.float32), atol=2e-3, rtol=0)

    @pytest.mark.parametrize("tma", [False, True])
    def test_no_keys_gives_zeros(self, cp, fw, tma):
        q = cp.ones((1, 2, 20, 64), dtype=cp.float16)
        k = cp.ones((1, 2, 0, 64), dtype=cp.float16)
        y = fw.flash_attention(q, k, k, 0.125, True, variant=fw.Variant(tma=tma))
        assert y.shape == (1, 20, 2, 64) and not bool(cp.any(y))

    @pytest.mark.parametrize("tma", [False, True])
    def test_no_queries_gives_an_empty_output(self, cp, fw, tma):
        q = cp.ones((1, 2, 0, 64), dtype=cp.float16)
        k = cp.ones((1, 2, 30, 64), dtype=cp.float16)
        y = fw.flash_attention(q, k, k, 0.125, True, variant=fw.Variant(tma=tma))
        assert y.shape == (1, 0, 2, 64)

    def test_unaligned_views_are_copied(self, cp, fw):
        rng = np.random.default_rng(9)
        buf = rng.standard_normal((1, 3, 170, 68)).astype(np.float16)
        dev = cp.asarray(buf)[..., 2:66]
        host = buf[..., 2:66]
        y = fw.flash_attention(dev, dev[:, :1], dev[:, 1:2], 0.125, True)
        assert_close(cp, y, reference(host, host[:, :1], host[:, 1:2], 0.125, True), "float16")

    def test_writes_into_out(self, cp, fw):
        rng = np.random.default_rng(5)
        (q, k, v), host = make_inputs(cp, rng, 1, 4, 4, 200, 200, 64, np.float16)
        out = cp.full((1, 200, 4, 64), 7, dtype=cp.float16)
        assert fw.flash_attention(q, k, v, 0.125, False, out=out) is out
        assert_close(cp, out, reference(*host, 0.125, False), "float16")
        with pytest.raises(ValueError, match="expected a contiguous"):
            fw.flash_attention(q, k, v, 0.125, False, out=out[:, :100])

    @pytest.mark.parametrize("dtype, d, scale", [("float32", 64, 0.1), ("float16", 32, 0.1),
                                                 ("float16", 96, 0.1), ("float16", 256, 0.1),
                                                 ("float16", 128, 0.0),
                                                 ("float16", 128, float("nan"))])
    def test_declines_what_it_does_not_cover(self, cp, fw, dtype, d, scale):
        q = cp.zeros((1, 2, 32, d), dtype=dtype)
        assert fw.flash_attention(q, q, q, scale, False) is None

    def test_default_variant_by_head_dim(self, fw):
        assert fw.default_variant(64).stages == 3
        assert fw.default_variant(128) == fw.DEFAULT and fw.DEFAULT.stages == 2

    @pytest.mark.parametrize("stages", [0, 1, 4])
    def test_rejects_a_stage_count(self, cp, fw, stages):
        q = cp.zeros((1, 2, 32, 64), dtype=cp.float16)
        with pytest.raises(ValueError, match="variant.stages is"):
            fw.flash_attention(q, q, q, 0.1, False, variant=fw.Variant(stages=stages))

    def test_an_nvrtc_without_sm90a_falls_back(self, cp, fw, monkeypatch):
        from dist_rt.runtime.cuda import cubin

        def refuse(*args, **kwargs):
            raise cubin.CompileError("NVRTC could not compile x.cu for sm_90a: invalid option")

        monkeypatch.setattr(fw, "_KERNELS", {})
        monkeypatch.setattr(fw, "_UNBUILDABLE", None)
        monkeypatch.setattr(cubin, "load", refuse)
        q = cp.ones((1, 2, 40, 64), dtype=cp.float16)
        with pytest.warns(RuntimeWarning, match="falls back to the mma.sync kernel"):
            assert fw.flash_attention(q, q, q, 0.125, True) is None
        assert not fw.available()
        # The dispatch then runs the mma.sync kernel.
        from dist_rt.runtime.cuda import kernels

        layer = AttentionLayer(causal=1, output_layout="bshd")
        (y,) = kernels.attention(layer, [q, q, q], None)
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), 1.0, atol=1e-3)

    @pytest.mark.parametrize("warm", [True, False])
    def test_graph_capture_with_tma(self, cp, fw, warm):
        """Captured after a warm-up call, the kernel reads the tensor maps that call
        uploaded; captured cold, it copies with cp.async (no upload inside a capture)."""
        rng = np.random.default_rng(14)
        (q, k, v), host = make_inputs(cp, rng, 1, 4, 2, 300, 300, 128, np.float16)
        variant = fw.Variant(tma=True)
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            fw.flash_attention(q[:, :, :200], k, v, 0.1, True, variant=variant)  # compiles
            if warm:
                fw.flash_attention(q, k, v, 0.1, True, variant=variant)
            stream.begin_capture()
            y = fw.flash_attention(q, k, v, 0.1, True, variant=variant)
            graph = stream.end_capture()
            y.fill(0)
            graph.launch(stream)
            stream.synchronize()
        assert_close(cp, y, reference(*host, 0.1, True), "float16")

    def test_graph_capture(self, cp, fw):
        rng = np.random.default_rng(4)
        (q, k, v), _ = make_inputs(cp, rng, 2, 8, 2, 300, 300, 128, np.float16)
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            want = fw.flash_attention(q, k, v, 0.1, True)
            stream.begin_capture()  # compiled eagerly, above
            y = fw.flash_attention(q, k, v, 0.1, True)
            graph = stream.end_capture()
            y.fill(0)
            graph.launch(stream)
            stream.synchronize()
        np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want))


class TestTensorMaps:
    def test_rejects_layouts_tma_cannot_read(self, cp):
        from dist_rt.runtime.cuda import tma

        with pytest.raises(tma.TmaError, match="16-bit"):
            tma.encode_16bit(cp.zeros((4, 64), cp.float32), (64, 4))
        odd = cp.zeros((4, 72), cp.float16)[:, :68]  # rows 144 bytes apart: fine
        tma.encode_16bit(odd, (64, 4))
        with pytest.raises(tma.TmaError, match="multiples of 16"):
            tma.encode_16bit(cp.zeros((4, 68), cp.float16)[:, :64], (64, 4))

    def test_maps_are_cached_by_buffer_and_layout(self, cp):
        from dist_rt.runtime.cuda import tma

        x = cp.zeros((1, 2, 256, 64), cp.float16)
        box = (64, 128, 1, 1)
        a = tma.device_maps([x], [box])
        assert a is tma.device_maps([x], [box]) and a.nbytes == tma.MAP_BYTES
        assert tma.device_maps([x[:, :1]], [box]) is not a

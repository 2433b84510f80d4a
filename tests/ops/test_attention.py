"""dist_rt::Attention against a plain NumPy reference; ONNX Attention and RotaryEmbedding
against onnxruntime; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt.errors import ShapeError
from dist_rt.network import Network
from dist_rt.ops import RunContext

RNG = np.random.default_rng(17)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def reference(q, k, v, mask=None, causal=False, scale=None):
    """Per-head loops in float64: the definition of dist_rt::Attention."""
    b, hq, s, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    g = hq // hkv
    scale = 1 / np.sqrt(d) if scale is None else scale
    out = np.zeros((b, hq, s, v.shape[3]))
    bias = np.zeros((b, hq, s, skv))
    if mask is not None:
        m = np.broadcast_to(mask, bias.shape)
        bias = np.where(m, 0, -np.inf) if m.dtype == bool else bias + m
    for bi in range(b):
        for h in range(hq):
            for i in range(s):
                sc = scale * (q[bi, h, i].astype(np.float64) @ k[bi, h // g].T) + bias[bi, h, i]
                if causal:
                    sc[np.arange(skv) > i + skv - s] = -np.inf
                if np.isneginf(sc).all():
                    continue
                p = np.exp(sc - sc.max())
                out[bi, h, i] = (p / p.sum()) @ v[bi, h // g]
    return out


def run_fused(q, k, v, mask=None, name="attn", **attrs):
    net = Network("n")
    names = ["q", "k", "v"] + (["m"] if mask is not None else [])
    arrays = [q, k, v] + ([mask] if mask is not None else [])
    for n, a in zip(names, arrays, strict=True):
        net.add_input(n, a.dtype, a.shape)
    layer = net.add_layer("Attention", names, attrs, name=name, domain="dist_rt")
    assert layer.outputs[0].shape == q.shape[:3] + (v.shape[3],)
    return layer.op.run(layer, arrays, RunContext())[0]


class TestFusedAttention:
    @pytest.mark.parametrize("hq,hkv,s,skv,causal", [
        (3, 3, 5, 5, False),
        (4, 2, 5, 5, True),   # GQA + causal, square
        (6, 2, 1, 7, True),   # decode step: one query against a KV cache
        (4, 1, 3, 8, True),   # multi-query, causal aligned to the end
        (2, 2, 4, 6, False),
    ])
    def test_against_numpy(self, hq, hkv, s, skv, causal):
        q, k, v = rand(2, hq, s, 8), rand(2, hkv, skv, 8), rand(2, hkv, skv, 5)
        got = run_fused(q, k, v, causal=int(causal), num_heads=hq, kv_num_heads=hkv)
        np.testing.assert_allclose(got, reference(q, k, v, causal=causal), rtol=1e-5,
                                   atol=1e-5)

    def test_bool_mask_and_scale(self):
        q, k, v = rand(2, 4, 3, 6), rand(2, 2, 7, 6), rand(2, 2, 7, 6)
        mask = RNG.random((2, 1, 3, 7)) > 0.3
        mask[..., 0] = True
        got = run_fused(q, k, v, mask, scale=0.3, causal=1)
        np.testing.assert_allclose(got, reference(q, k, v, mask, True, 0.3), rtol=1e-5,
                                   atol=1e-5)

    def test_float_mask_broadcast(self):
        q, k, v = rand(1, 3, 4, 8), rand(1, 3, 6, 8), rand(1, 3, 6, 8)
        mask = rand(1, 1, 1, 6)
        np.testing.assert_allclose(run_fused(q, k, v, mask), reference(q, k, v, mask),
                                   rtol=1e-5, atol=1e-5)

    def test_fully_masked_row_is_zero(self):
        q, k, v = rand(1, 2, 3, 4), rand(1, 2, 5, 4), rand(1, 2, 5, 4)
        mask = np.ones((3, 5), bool)
        mask[1] = False
        got = run_fused(q, k, v, mask)
        assert np.all(got[:, :, 1] == 0) and np.isfinite(got).all()
        np.testing.assert_allclose(got, reference(q, k, v, mask), rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
    def test_half_precision(self, dtype):
        from dist_rt import dtypes
        dt = dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
        q, k, v = (rand(1, 4, 6, 16).astype(dt), rand(1, 2, 6, 16).astype(dt),
                   rand(1, 2, 6, 16).astype(dt))
        got = run_fused(q, k, v, causal=1)
        assert got.dtype == dt
        want = reference(*(a.astype(np.float32) for a in (q, k, v)), causal=True)
        np.testing.assert_allclose(got.astype(np.float32), want, atol=3e-2)

    def test_head_split_matches_full(self):
        """Two ranks each holding whole kv groups compute exactly their heads."""
        q, k, v = rand(1, 8, 4, 8), rand(1, 4, 6, 8), rand(1, 4, 6, 8)
        full = run_fused(q, k, v, causal=1, num_heads=8, kv_num_heads=4)
        parts = [run_fused(q[:, 4 * r:4 * r + 4], k[:, 2 * r:2 * r + 2],
                           v[:, 2 * r:2 * r + 2], causal=1, num_heads=8, kv_num_heads=4)
                 for r in range(2)]
        np.testing.assert_array_equal(np.concatenate(parts, axis=1), full)

    def test_bad_head_dim_names_layer(self):
        with pytest.raises(ShapeError, match="layer 'attn0'"):
            run_fused(rand(1, 2, 3, 8), rand(1, 2, 3, 4), rand(1, 2, 3, 4), name="attn0")

    def test_bad_gqa_ratio(self):
        with pytest.raises(ShapeError, match="layer 'attn1'.*Hq = Hkv \\* 3"):
            run_fused(rand(1, 4, 3, 8), rand(1, 2, 3, 8), rand(1, 2, 3, 8), name="attn1",
                      num_heads=6, kv_num_heads=2)

    def test_bad_mask(self):
        with pytest.raises(ShapeError, match="layer 'attn2'.*mask"):
            run_fused(rand(1, 2, 3, 8), rand(1, 2, 5, 8), rand(1, 2, 5, 8),
                      rand(1, 1, 3, 4), name="attn2")


class TestOnnxAttention:
    def test_4d_gqa_causal_with_past(self):
        feeds = {"q": rand(2, 4, 3, 8), "k": rand(2, 2, 3, 8), "v": rand(2, 2, 3, 6),
                 "pk": rand(2, 2, 4, 8), "pv": rand(2, 2, 4, 6)}
        # attn_mask omitted: an empty name in slot 3
        _compare_named("Attention", ["q", "k", "v", "", "pk", "pv"], feeds,
                       {"is_causal": 1}, 3)

    def test_3d_bool_mask_softcap(self):
        feeds = {"q": rand(2, 3, 16), "k": rand(2, 5, 8), "v": rand(2, 5, 8),
                 "m": RNG.random((3, 5)) > 0.2}
        _compare_named("Attention", ["q", "k", "v", "m"], feeds,
                       {"q_num_heads": 4, "kv_num_heads": 2, "softcap": 2.0, "scale": 0.4}, 1)

    def test_float_mask_short(self):
        feeds = {"q": rand(1, 2, 3, 4), "k": rand(1, 2, 5, 4), "v": rand(1, 2, 5, 4),
                 "m": rand(1, 2, 3, 5)}
        _compare_named("Attention", ["q", "k", "v", "m"], feeds, {}, 1)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("layout", ["3d", "4d"])
def test_rotary_embedding(interleaved, layout):
    b, h, s, d, rd = 2, 3, 5, 8, 6
    x = rand(b, s, h * d) if layout == "3d" else rand(b, h, s, d)
    angles = RNG.uniform(0, 6, (11, rd // 2))
    feeds = {"x": x, "cos": np.cos(angles).astype(np.float32),
             "sin": np.sin(angles).astype(np.float32),
             "pos": RNG.integers(0, 11, (b, s)).astype(np.int64)}
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rd}
    if layout == "3d":
        attrs["num_heads"] = h
    _compare_named("RotaryEmbedding", list(feeds), feeds, attrs, 1)


def test_rotary_bad_cache():
    net = Network("n", opset=23)
    for n, shape in (("x", (1, 2, 3, 4)), ("c", (1, 3, 3)), ("s", (1, 3, 3))):
        net.add_input(n, np.float32, shape)
    layer = net.add_layer("RotaryEmbedding", ["x", "c", "s"], {}, name="rope")
    with pytest.raises(ShapeError, match="layer 'rope'.*expected \\(B, S, 2\\)"):
        layer.op.run(layer, [rand(1, 2, 3, 4), rand(1, 3, 3), rand(1, 3, 3)], RunContext())


def _compare_named(op_type, names, feeds, attrs, n_outputs, rtol=1e-4, atol=1e-5):
    """Like ``_ort_util.compare`` but with explicit input slots ('' = omitted)."""
    import onnxruntime as ort
    from node_harness import run_model_on_ops
    from onnx import helper

    from dist_rt import dtypes

    def model(out_dtypes):
        ins = [helper.make_tensor_value_info(k, dtypes.to_onnx(v.dtype), v.shape)
               for k, v in feeds.items()]
        outs = [helper.make_tensor_value_info(f"y{i}", dtypes.to_onnx(d), None)
                for i, d in enumerate(out_dtypes)]
        node = helper.make_node(op_type, names, [o.name for o in outs], **attrs)
        m = helper.make_model(helper.make_graph([node], "g", ins, outs),
                              opset_imports=[helper.make_opsetid("", 23)])
        m.ir_version = 10
        return m

    ours = run_model_on_ops(model([np.float32] * n_outputs), list(feeds.values()))
    sess = ort.InferenceSession(model([o.dtype for o in ours]).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    for got, want in zip(ours, sess.run(None, feeds), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)

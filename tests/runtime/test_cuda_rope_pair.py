"""CUDA dist_rt::RotaryHalfPair (runtime/cuda/rope.py): one launch for q and k vs NumPy.

Reference: ``x * cos + rotate_half(x) * sin`` in float64 from the same 16-bit values; the
kernels compute in float32 and round once (fp16 atol 2e-3 on O(1) values, bf16 2e-2, fp32
1e-5). The pair must also equal two ``rope_half`` calls bit for bit (the same arithmetic),
and launch ``rope_half_pair_vec`` once exactly where both operands take the vector path.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig, dtypes

pytestmark = pytest.mark.gpu

TOL = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 2e-2}
DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
          "bfloat16": dtypes.bfloat16}


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture
def launches(cp, monkeypatch):
    """Names of the kernel templates launched through ``kernels._fn`` during the test."""
    from dist_rt.runtime.cuda import kernels

    seen: list[str] = []
    real = kernels._fn

    def spy(template, dtype):
        seen.append(template)
        return real(template, dtype)

    monkeypatch.setattr(kernels, "_fn", spy)
    return seen


def _reference(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    xf = x.astype(np.float64)
    half = x.shape[-1] // 2
    rot = np.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    return xf * cos.astype(np.float64) + rot * sin.astype(np.float64)


def _operands(cp, rng, dtype, b, hq, hk, s, d, layout):
    """Host q, k and their device forms for ``layout``:

    * ``contiguous``: (B, H, S, D) arrays;
    * ``merged``: views of one merged QKV output (B, S, (Hq + 2 Hk) D), as the Split of the
      merged projection, Reshape and Transpose give them (strides of whole vectors);
    * ``merged_pad``: the same with two extra columns, so the s and b strides are not whole
      16-byte vectors (the scalar kernel, two launches);
    * ``heads``: head slices of one contiguous (B, Hq + 2 Hk, S, D) tensor.
    """
    if layout == "contiguous":
        q = rng.standard_normal((b, hq, s, d)).astype(dtype)
        k = rng.standard_normal((b, hk, s, d)).astype(dtype)
        return q, k, cp.asarray(q), cp.asarray(k)
    if layout == "heads":
        qkv = rng.standard_normal((b, hq + 2 * hk, s, d)).astype(dtype)
        dev = cp.asarray(qkv)
        return (qkv[:, :hq], qkv[:, hq:hq + hk], dev[:, :hq], dev[:, hq:hq + hk])
    width = (hq + 2 * hk) * d + (2 if layout == "merged_pad" else 0)
    qkv = rng.standard_normal((b, s, width)).astype(dtype)
    q = qkv[..., :hq * d].reshape(b, s, hq, d).transpose(0, 2, 1, 3)
    k = qkv[..., hq * d:(hq + hk) * d].reshape(b, s, hk, d).transpose(0, 2, 1, 3)
    # The same views on the device, by their strides (whatever CuPy's reshape would do).
    dev = cp.asarray(qkv)
    dq = cp.lib.stride_tricks.as_strided(dev, shape=q.shape, strides=q.strides)
    dk = cp.lib.stride_tricks.as_strided(dev[..., hq * d:], shape=k.shape, strides=k.strides)
    return q, k, dq, dk


def _vec_path(dtype, b: int, s: int, d: int, layout: str) -> bool | None:
    """True when both operands meet rope_half_vec's conditions (one pair launch); None when
    either answer is right (the padded strides belong to dims of size 1, never stepped, and
    the array library may report any stride there)."""
    vec = 16 // np.dtype(dtype).itemsize
    if (d // 2) % vec:
        return False
    if layout == "merged_pad":
        return None if b == 1 and s == 1 else False
    return True


#: (batch, q heads, k heads, seq, head dim): GQA and MHA, decode and prefill-like, uneven.
SHAPES = [(1, 8, 2, 1, 64), (2, 4, 4, 7, 128), (3, 6, 2, 5, 16), (1, 32, 8, 1, 128),
          (2, 3, 1, 7, 6), (2, 4, 2, 9, 12), (1, 2, 1, 3, 24)]


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("layout", ["contiguous", "merged", "merged_pad", "heads"])
@pytest.mark.parametrize("b, hq, hk, s, d", SHAPES)
def test_pair_matches_numpy(cp, launches, dt, layout, b, hq, hk, s, d):
    from dist_rt.runtime.cuda import rope

    dtype = DTYPES[dt]
    rng = np.random.default_rng(b * 1000 + hq * 100 + s * 10 + d)
    q, k, dq, dk = _operands(cp, rng, dtype, b, hq, hk, s, d, layout)
    cos, sin = (rng.standard_normal((1, 1, s, d)).astype(dtype) for _ in range(2))
    dcos, dsin = cp.asarray(cos), cp.asarray(sin)
    q_rot, k_rot = rope.rope_half_pair(None, [dq, dk, dcos, dsin], None)
    pair_launches = list(launches)
    for got, x in ((q_rot, q), (k_rot, k)):
        assert got.shape == x.shape and got.dtype == dtype and got.flags.c_contiguous
        np.testing.assert_allclose(cp.asnumpy(got).astype(np.float64), _reference(x, cos, sin),
                                   rtol=TOL[dt], atol=TOL[dt] * 10)
    vec = _vec_path(dtype, b, s, d, layout)
    if vec:
        assert pair_launches == ["rope_half_pair_vec"]
    elif vec is not None:
        assert len(pair_launches) == 2 and "rope_half_pair_vec" not in pair_launches
    (q1,) = rope.rope_half(None, [dq, dcos, dsin], None)
    (k1,) = rope.rope_half(None, [dk, dcos, dsin], None)
    for got, single in ((q_rot, q1), (k_rot, k1)):
        np.testing.assert_array_equal(cp.asnumpy(got).view(np.uint8),
                                      cp.asnumpy(single).view(np.uint8))


def test_one_operand_off_the_vector_path(cp, launches):
    """q contiguous (vector path), k a view with a padded row stride (scalar kernel)."""
    from dist_rt.runtime.cuda import rope

    rng = np.random.default_rng(3)
    b, hq, hk, s, d = 2, 4, 2, 5, 32
    q = rng.standard_normal((b, hq, s, d)).astype(np.float16)
    wide = rng.standard_normal((b, s, hk * d + 2)).astype(np.float16)
    k = wide[..., :hk * d].reshape(b, s, hk, d).transpose(0, 2, 1, 3)
    dk = cp.asarray(wide)[..., :hk * d].reshape(b, s, hk, d).transpose(0, 2, 1, 3)
    cos, sin = (rng.standard_normal((1, 1, s, d)).astype(np.float16) for _ in range(2))
    q_rot, k_rot = rope.rope_half_pair(None, [cp.asarray(q), dk, cp.asarray(cos),
                                              cp.asarray(sin)], None)
    assert launches == ["rope_half_vec", "rope_half"]
    for got, x in ((q_rot, q), (k_rot, k)):
        np.testing.assert_allclose(cp.asnumpy(got).astype(np.float64), _reference(x, cos, sin),
                                   rtol=2e-3, atol=2e-2)


def test_declines_like_rope_half(cp):
    """None (the generic op) where rope_half would decline either operand."""
    from dist_rt.runtime.cuda import rope

    q = cp.ones((1, 4, 3, 8), cp.float16)
    cos = cp.ones((1, 1, 3, 8), cp.float16)
    assert rope.rope_half_pair(None, [q, q.astype(cp.float32), cos, cos], None) is None
    assert rope.rope_half_pair(None, [q, q, cos, cos.astype(cp.float32)], None) is None
    assert rope.rope_half_pair(None, [q, q[0], cos, cos], None) is None  # k not 4-D
    assert rope.rope_half_pair(None, [q, q, cos, cp.ones((1, 1, 1, 8), cp.float16)],
                               None) is None  # sin broadcasts: the generic op handles it


def test_empty_operands(cp):
    from dist_rt.runtime.cuda import rope

    x = cp.ones((2, 4, 0, 8), cp.float16)
    cos = cp.ones((1, 1, 0, 8), cp.float16)
    q_rot, k_rot = rope.rope_half_pair(None, [x, x[:, :2], cos, cos], None)
    assert (q_rot.shape, k_rot.shape) == ((2, 4, 0, 8), (2, 2, 0, 8))


def _llama(hidden: int, heads: int, kv_heads: int):
    from dist_rt.models.llama import LlamaConfig, make_llama

    cfg = LlamaConfig(layers=2, hidden=hidden, heads=heads, kv_heads=kv_heads, mlp=256,
                      vocab=300, max_seq=64)
    return cfg, dist_rt.parse_onnx(make_llama(cfg))


class TestEngine:
    # head dim 32: the merged QKV views take the vector path; 12: the scalar kernel.
    @pytest.mark.parametrize("hidden, heads, kv_heads, kernel",
                             [(128, 4, 2, "rope_half_pair_vec"), (48, 4, 2, "rope_half")])
    def test_llama_fp16_matches_cpu(self, cp, launches, hidden, heads, kv_heads, kernel):
        from dist_rt.models.llama import sample_inputs

        cfg, net = _llama(hidden, heads, kv_heads)
        engine = Builder(BuilderConfig(device="cuda", precision="fp16")).build(net)
        ops = Counter(lay.op_type for lay in engine.network.layers)
        assert ops["RotaryHalfPair"] == cfg.layers and ops["RotaryHalf"] == 0
        cpu = Builder(BuilderConfig(device="cpu", optimization_level=0)).build(net)
        for batch, seq in [(1, 1), (2, 17)]:
            feeds = sample_inputs(cfg, batch, seq)
            launches.clear()
            with cpu.create_execution_context() as c0, engine.create_execution_context() as c1:
                c1.use_cuda_graph = False  # count the eager launches
                ref, out = c0.execute(feeds)["logits"], c1.execute(feeds)["logits"]
            assert np.max(np.abs(out - ref)) <= 3e-2 * (1 + np.max(np.abs(ref)))
            rope_launches = Counter(n for n in launches if n.startswith("rope_half"))
            per_layer = 1 if kernel == "rope_half_pair_vec" else 2
            assert rope_launches == {kernel: per_layer * cfg.layers}

    def test_decode_graph_replay(self, cp):
        """One-token steps captured in a CUDA graph equal the eager run."""
        from dist_rt.models.llama import sample_inputs

        cfg, net = _llama(128, 4, 2)
        engine = Builder(BuilderConfig(device="cuda", precision="fp16")).build(net)
        with engine.create_execution_context() as graph, \
                engine.create_execution_context() as eager:
            eager.use_cuda_graph = False
            for seed in range(3):  # capture, then two replays on fresh inputs
                feeds = sample_inputs(cfg, 2, 1, seed=seed)
                np.testing.assert_allclose(graph.execute(feeds)["logits"],
                                           eager.execute(feeds)["logits"], atol=1e-3)
            entries = list(graph._cuda_graph_runner.graphs.values())
        assert [e.fallback for e in entries] == [None]

"""CUDA backend: every op against the CPU references, fused kernels, CUDA-graph replay.

Tolerances (METHOD.md): fp32 rtol 1e-3 / atol 1e-5 (different summation order on the GPU);
fp16 atol 2e-3 on O(1) values, bf16 atol 2e-2 (one rounding of the output each).
Set ``DIST_RT_CUDA_OP_REPORT=path`` to write every op mismatch to a file.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from node_harness import node_cases, run_model_on_ops

from dist_rt import Builder, BuilderConfig, dtypes

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def backend(cp):
    from dist_rt.runtime.backends import get_backend

    return get_backend("cuda")


#: Node cases the CUDA backend is known to get wrong, with the reason; anything else that
#: differs from the CPU reference fails the test.
KNOWN_CUDA_GAPS = {
    "test_mod_float_edge_cases_fmod": "CuPy's fmod differs from NumPy's on inf and signed 0",
    # Since bf16 tensors live on the device (2026-11-21), the unfused ("expanded") bf16
    # attention graphs differ from the CPU by more than bf16 tolerance; the fused Attention
    # kernels match. Suspected: CuPy and NumPy/ml_dtypes accumulate bf16 reductions and
    # batched products differently. Not yet investigated.
    "test_attention_3d_causal_bf16_expanded": "bf16 expanded attention, see above",
    "test_attention_4d_attn_mask_causal_bf16_expanded": "same",
    "test_attention_4d_causal_bf16_expanded": "same",
    "test_attention_4d_causal_padded_kv_bf16_expanded": "same",
    "test_attention_4d_padded_kv_bf16_expanded": "same",
}


def _known(name: str) -> bool:
    return any(name.startswith(k) for k in KNOWN_CUDA_GAPS)


def test_every_op_matches_cpu(backend):
    failures, checked = {}, 0
    for name, model, ins, _ in node_cases():
        if not all(isinstance(a, np.ndarray) and a.dtype.kind not in "OUS" for a in ins):
            continue  # sequences, optionals and strings have no device representation
        try:
            ref = run_model_on_ops(model, ins)
        except Exception:  # noqa: BLE001 - the CPU reference's own failures are tested elsewhere
            continue
        if not all(isinstance(r, np.ndarray) and r.dtype.kind not in "OUS" for r in ref):
            continue
        checked += 1
        try:
            got = run_model_on_ops(model, ins, backend)
            for g, r in zip(got, ref, strict=True):
                r = np.asarray(r)
                assert g.shape == r.shape, f"shape {g.shape} vs {r.shape}"
                if r.dtype.kind in "biu":
                    np.testing.assert_array_equal(g, r)
                elif r.dtype == dtypes.bfloat16:  # 8 mantissa bits: an ulp is 4e-3..8e-3
                    np.testing.assert_allclose(np.asarray(g, np.float64),
                                               np.asarray(r, np.float64),
                                               rtol=TOL["bf16"], atol=TOL["bf16"])
                else:
                    np.testing.assert_allclose(np.asarray(g, np.float64),
                                               np.asarray(r, np.float64),
                                               rtol=1e-3, atol=1e-5)
        except Exception as exc:  # noqa: BLE001 - collect every failing op, then report
            failures[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    report = os.environ.get("DIST_RT_CUDA_OP_REPORT")
    if report:
        with open(report, "w") as f:
            f.write(f"{checked} cases checked, {len(failures)} failed\n")
            f.writelines(f"{k}: {v}\n" for k, v in sorted(failures.items()))
    assert checked > 500
    unexpected = sorted(k for k in failures if not _known(k))
    assert not unexpected, f"{len(unexpected)}/{checked} cases differ: " + "; ".join(
        f"{k}: {failures[k]}" for k in unexpected[:30])


class _Layer:
    """A stand-in layer for calling kernel wrappers directly."""

    def __init__(self, op_type, domain="", opset=23, **attributes):
        self.op_type, self.domain, self.opset = op_type, domain, opset
        self.attributes, self.name = attributes, op_type

    def attr(self, name, default=None):
        return self.attributes.get(name, default)


TOL = {np.float32: 1e-4, np.float16: 2e-3, "bf16": 2e-2}


def _dtype(key):
    return dtypes.bfloat16 if key == "bf16" else np.dtype(key)


@pytest.mark.parametrize("dt", [np.float32, np.float16, "bf16"])
class TestKernels:
    def test_rmsnorm(self, cp, backend, dt):
        from dist_rt.runtime.cuda import kernels

        rng = np.random.default_rng(0)
        x = rng.standard_normal((3, 5, 300)).astype(_dtype(dt))
        w = rng.standard_normal(300).astype(_dtype(dt))
        xf, wf = x.astype(np.float32), w.astype(np.float32)
        ref = xf / np.sqrt((xf * xf).mean(-1, keepdims=True) + 1e-5) * wf
        (y,) = kernels.rmsnorm(_Layer("RMSNormalization", epsilon=1e-5), [cp.asarray(x),
                                                                          cp.asarray(w)], None)
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), ref, atol=TOL[dt] * 4,
                                   rtol=TOL[dt])

    @pytest.mark.parametrize("cols", [2050, 4096, 72])  # scalar, 16-byte vector paths
    def test_add_rmsnorm(self, cp, backend, dt, cols):
        from dist_rt.runtime.cuda import kernels

        rng = np.random.default_rng(7)
        a, b = (rng.standard_normal((2, 3, cols)).astype(_dtype(dt)) for _ in range(2))
        w = rng.standard_normal(cols).astype(_dtype(dt))
        s_ref = (a + b).astype(np.float32)  # rounded to the input dtype, as Add stores it
        ref = s_ref / np.sqrt((s_ref * s_ref).mean(-1, keepdims=True) + 1e-6) * w.astype(
            np.float32)
        s, y = kernels.add_rmsnorm(_Layer("AddRMSNorm", "dist_rt", epsilon=1e-6),
                                   [cp.asarray(a), cp.asarray(b), cp.asarray(w)], None)
        np.testing.assert_array_equal(cp.asnumpy(s).astype(np.float32), s_ref)
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), ref, atol=TOL[dt] * 4,
                                   rtol=TOL[dt])

    def test_transpose_is_a_view(self, cp, backend, dt):
        from dist_rt.runtime.cuda import kernels

        x = cp.asarray(np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5).astype(_dtype(dt)))
        (y,) = kernels.transpose(_Layer("Transpose", perm=[0, 2, 1, 3]), [x], None)
        assert y.data.ptr == x.data.ptr and y.shape == (2, 4, 3, 5)
        np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(x).transpose(0, 2, 1, 3))
        (z,) = kernels.transpose(_Layer("Transpose"), [x], None)  # default: reversed axes
        assert z.shape == (5, 4, 3, 2)

    def test_rows_of_one_column(self, cp, backend, dt):
        from dist_rt.runtime.cuda import kernels

        x = cp.asarray(np.full((3, 4, 1), 2.0, dtype=_dtype(dt)))
        (y,) = kernels.softmax(_Layer("Softmax", opset=13, axis=-1), [x], None)
        np.testing.assert_array_equal(cp.asnumpy(y).astype(np.float32), 1.0)

    def test_softmax(self, cp, backend, dt):
        from dist_rt.runtime.cuda import kernels

        x = np.random.default_rng(1).standard_normal((4, 7, 1000)).astype(_dtype(dt)) * 4
        xf = x.astype(np.float32)
        e = np.exp(xf - xf.max(-1, keepdims=True))
        (y,) = kernels.softmax(_Layer("Softmax", opset=13, axis=-1), [cp.asarray(x)], None)
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32),
                                   e / e.sum(-1, keepdims=True), atol=TOL[dt])

    # scalar path, 16-byte path, and the halves of a merged gate/up output (row-strided)
    @pytest.mark.parametrize("shape, merged", [((5, 999), False), ((3, 4, 5632), False),
                                               ((3, 4, 5632), True)])
    def test_silu_mul(self, cp, backend, dt, shape, merged):
        from dist_rt.runtime.cuda import kernels

        rng = np.random.default_rng(2)
        a, b = (rng.standard_normal(shape).astype(_dtype(dt)) * 3 for _ in range(2))
        af, bf = a.astype(np.float32), b.astype(np.float32)
        da, db = cp.asarray(a), cp.asarray(b)
        if merged:
            both = cp.concatenate([da, db], axis=-1)
            da, db = both[..., :shape[-1]], both[..., shape[-1]:]
        (y,) = kernels.silu_mul(_Layer("SiluMul", "dist_rt"), [da, db], None)
        assert y.flags.c_contiguous
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32),
                                   af / (1 + np.exp(-af)) * bf, atol=TOL[dt] * 10,
                                   rtol=TOL[dt])

    @pytest.mark.parametrize("d", [16, 128, 12])  # 16-byte vector paths; 12: scalar path
    def test_rope_half(self, cp, backend, dt, d):
        from dist_rt.runtime.cuda import kernels

        rng = np.random.default_rng(4)
        x_bshd = rng.standard_normal((2, 9, 3, d)).astype(_dtype(dt))
        cos, sin = (rng.standard_normal((1, 1, 9, d)).astype(_dtype(dt)) for _ in range(2))
        xf = x_bshd.transpose(0, 2, 1, 3).astype(np.float32)
        rot = np.concatenate([-xf[..., d // 2:], xf[..., :d // 2]], axis=-1)
        ref = xf * cos.astype(np.float32) + rot * sin.astype(np.float32)
        (y,) = kernels.rope_half(_Layer("RotaryHalf", "dist_rt"),
                                 [cp.asarray(x_bshd).transpose(0, 2, 1, 3), cp.asarray(cos),
                                  cp.asarray(sin)], None)
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), ref, atol=TOL[dt] * 10,
                                   rtol=TOL[dt])

    @pytest.mark.parametrize("a_shape, b_shape", [((3, 5, 40), (40, 24)), ((1, 1, 64), (64, 7)),
                                                  ((7, 33), (33, 16)),
                                                  ((2, 3, 9, 16), (2, 3, 16, 5))])
    def test_matmul_direct_cublas(self, cp, backend, dt, a_shape, b_shape):
        from dist_rt.runtime.cuda import kernels

        rng = np.random.default_rng(5)
        a = rng.standard_normal(a_shape).astype(_dtype(dt))
        b = rng.standard_normal(b_shape).astype(_dtype(dt))
        ref = a.astype(np.float64) @ b.astype(np.float64)
        (y,) = kernels.matmul(_Layer("MatMul"), [cp.asarray(a), cp.asarray(b)], None)
        err = np.linalg.norm(cp.asnumpy(y).astype(np.float64) - ref) / np.linalg.norm(ref)
        assert y.shape == ref.shape and err < TOL[dt] * 5

    def test_matmul_captures(self, cp, backend, dt):
        from dist_rt.runtime.cuda import kernels

        rng = np.random.default_rng(6)
        a = cp.asarray(rng.standard_normal((4, 8, 64)).astype(_dtype(dt)))
        b = cp.asarray(rng.standard_normal((64, 32)).astype(_dtype(dt)))
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            (want,) = kernels.matmul(_Layer("MatMul"), [a, b], None)  # handle made eagerly
            stream.begin_capture()
            (y,) = kernels.matmul(_Layer("MatMul"), [a, b], None)
            graph = stream.end_capture()
            y.fill(0)
            graph.launch(stream)
            stream.synchronize()
        np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want))

    @pytest.mark.parametrize("s", [40, 67])
    def test_attention_causal_chunks(self, cp, backend, dt, s, monkeypatch):
        from dist_rt.ops._op import RunContext
        from dist_rt.ops.fused_attention import FusedAttention
        from dist_rt.runtime.cuda import kernels

        monkeypatch.setattr(kernels, "CAUSAL_CHUNK_ROWS", 8)  # 5 and 8 uneven chunks
        rng = np.random.default_rng(7)
        b, hq, hkv, d = 2, 6, 2, 32
        q = rng.standard_normal((b, hq, s, d)).astype(_dtype(dt))
        k_bshd, v_bshd = (rng.standard_normal((b, s, hkv, d)).astype(_dtype(dt))
                          for _ in range(2))
        layer = _Layer("Attention", "dist_rt", 1, causal=1, num_heads=hq, kv_num_heads=hkv,
                       scale=1 / math.sqrt(d))
        (ref,) = FusedAttention._run(layer, [q, *(np.ascontiguousarray(x.transpose(0, 2, 1, 3))
                                                  for x in (k_bshd, v_bshd))], RunContext())
        (y,) = kernels.attention(layer, [cp.asarray(q)] + [cp.asarray(x).transpose(0, 2, 1, 3)
                                                          for x in (k_bshd, v_bshd)], None)
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), ref.astype(np.float32),
                                   atol=TOL[dt] * 5, rtol=TOL[dt] * 5)

    @pytest.mark.parametrize("s, skv, causal", [(1, 77, 1), (5, 5, 1), (3, 40, 0),
                                                (40, 40, 1), (33, 70, 1), (64, 64, 0)])
    def test_attention_vs_reference(self, cp, backend, dt, s, skv, causal):
        from dist_rt.ops._op import RunContext
        from dist_rt.ops.fused_attention import FusedAttention
        from dist_rt.runtime.cuda import kernels

        rng = np.random.default_rng(3)
        b, hq, hkv, d = 2, 8, 2, 64
        q = rng.standard_normal((b, hq, s, d)).astype(_dtype(dt))
        k = rng.standard_normal((b, hkv, skv, d)).astype(_dtype(dt))
        # v strided like the exporter's Transpose of (B, S, H, D)
        v_bshd = rng.standard_normal((b, skv, hkv, d)).astype(_dtype(dt))
        v = v_bshd.transpose(0, 2, 1, 3)
        layer = _Layer("Attention", "dist_rt", 1, causal=causal, num_heads=hq,
                       kv_num_heads=hkv, scale=1 / math.sqrt(d))
        (ref,) = FusedAttention._run(layer, [q, k, np.ascontiguousarray(v)], RunContext())
        (y,) = kernels.attention(layer, [cp.asarray(q), cp.asarray(k),
                                         cp.asarray(v_bshd).transpose(0, 2, 1, 3)], None)
        assert y.shape == ref.shape
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), ref.astype(np.float32),
                                   atol=TOL[dt] * 5, rtol=TOL[dt] * 5)


def _llama_engine(precision, level=2):
    import dist_rt
    from dist_rt.models.llama import LlamaConfig, make_llama

    cfg = LlamaConfig(layers=2, hidden=128, heads=4, kv_heads=2, mlp=256, vocab=300,
                      max_seq=64)
    net = dist_rt.parse_onnx(make_llama(cfg))
    return cfg, net, Builder(BuilderConfig(device="cuda", precision=precision,
                                           optimization_level=level)).build(net)


class TestEngine:
    @pytest.mark.parametrize("precision, tol", [("fp32", 1e-3), ("fp16", 3e-2)])
    def test_llama_matches_cpu(self, cp, backend, precision, tol):
        from dist_rt.models.llama import sample_inputs

        cfg, net, engine = _llama_engine(precision)
        cpu = Builder(BuilderConfig(device="cpu", optimization_level=0)).build(net)
        for batch, seq in [(1, 1), (2, 17)]:
            feeds = sample_inputs(cfg, batch, seq)
            with cpu.create_execution_context() as c0, engine.create_execution_context() as c1:
                ref, out = c0.execute(feeds)["logits"], c1.execute(feeds)["logits"]
            assert np.max(np.abs(out - ref)) <= tol * (1 + np.max(np.abs(ref)))

    def test_graph_replay_equals_eager(self, cp, backend):
        from dist_rt.models.llama import sample_inputs
        from dist_rt.runtime.backends.cuda import graph_pool_bytes

        cfg, _, engine = _llama_engine("fp16")
        with engine.create_execution_context() as eager, \
                engine.create_execution_context() as graph:
            eager.use_cuda_graph = False
            for seed, (batch, seq) in enumerate([(1, 9), (1, 9), (2, 4), (1, 9)]):
                feeds = sample_inputs(cfg, batch, seq, seed=seed)
                a = eager.execute(feeds)["logits"]
                b = graph.execute(feeds)["logits"]
                np.testing.assert_allclose(b, a, atol=1e-3)
            runner = graph._cuda_graph_runner
            assert len(runner.graphs) == 2
            assert graph_pool_bytes(graph) > 0
            dev = graph.execute(sample_inputs(cfg, 1, 9), copy_outputs=False)["logits"]
            assert isinstance(dev, cp.ndarray)

    @pytest.mark.parametrize("seq", [9, 40])  # 40: attention's long-query (cuBLAS) path
    def test_graph_is_captured(self, cp, backend, seq):
        from dist_rt.models.llama import sample_inputs

        cfg, _, engine = _llama_engine("fp16")
        with engine.create_execution_context() as ctx, \
                engine.create_execution_context() as eager:
            eager.use_cuda_graph = False
            for seed in range(3):  # capture, then two replays on fresh inputs
                feeds = sample_inputs(cfg, 2, seq, seed=seed)
                np.testing.assert_allclose(ctx.execute(feeds)["logits"],
                                           eager.execute(feeds)["logits"], atol=1e-3)
            entries = list(ctx._cuda_graph_runner.graphs.values())
        assert [e.fallback for e in entries] == [None]
        assert [e.arena_note for e in entries] == [None]  # replays ran in the planned arena
        assert entries[0].arena_bytes > 0

    def test_arena_is_near_the_lifetime_bound(self, cp, backend):
        from dist_rt.builder.passes import BuildState, memory_plan
        from dist_rt.models.llama import sample_inputs

        cfg, _, engine = _llama_engine("fp16")
        shapes = {"input_ids": (2, 40)}
        plan = memory_plan.plan(engine.network, memory_plan.concrete_shapes(
            engine.network, BuildState(BuilderConfig(device="cuda"), input_shapes=shapes)))
        with engine.create_execution_context() as ctx:
            ctx.execute(sample_inputs(cfg, *shapes["input_ids"]))
            (arena,) = ctx._cuda_graph_runner.arena_bytes.values()
        # Kernel scratch (attention scores, GEMV partial sums) comes on top of the bound.
        assert 0 < arena <= 1.5 * plan["lower_bound_bytes"]

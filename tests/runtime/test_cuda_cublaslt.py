"""cuBLASLt GEMMs (runtime/cuda/cublaslt.py) and the ``lt<i>`` MatMul tactics.

``TestColumnMajor`` runs anywhere: it checks the row-major -> column-major mapping by
emulating cuBLASLt's column-major GEMM in NumPy on the very buffers and layouts the binding
passes, plus the struct layout and the cache keys. Every other class needs a GPU (marked
``gpu``, skipped without one).

Tolerances: max |y - ref| / (1 + |ref|) against a float64 product of the dtype-rounded
operands. fp32 runs CUBLAS_COMPUTE_32F (no TF32): 1e-4. fp16 / bf16 accumulate in float32
(split-K partials too) and round the output once: 2e-3 / 1.6e-2 (a few ulps of an output).
NaN (a poisoned output left unwritten) always fails.
"""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from dist_rt import Builder, BuilderConfig, dtypes
from dist_rt.network import Network
from dist_rt.runtime.cuda import cublaslt

TOL = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 1.6e-2}
DTYPES = ["float32", "float16", "bfloat16"]
LT_NAMES = {f"lt{i}" for i in range(cublaslt.MAX_ALGOS)}


def _dtype(name):
    return dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def _check(y, ref, dt, what=""):
    y = np.asarray(y).astype(np.float64)
    assert y.shape == ref.shape, f"{what}: shape {y.shape}, expected {ref.shape}"
    err = np.max(np.abs(y - ref) / (1.0 + np.abs(ref))) if ref.size else 0.0
    assert err <= TOL[dt], f"{what}: max scaled error {err:.3g} > {TOL[dt]}"


def _operands(rng, m, k, n, dt, trans_b):
    a = rng.standard_normal((m, k)).astype(np.float32).astype(_dtype(dt))
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32).astype(_dtype(dt))
    ref = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    return a, b, ref


# -- CPU: the mapping, the struct, the keys ----------------------------------------------------

def _col_major(flat, layout):
    """The column-major (rows, cols) matrix with leading dimension ``ld`` over ``flat``."""
    item = flat.itemsize
    return as_strided(flat, shape=(layout.rows, layout.cols), strides=(item, layout.ld * item))


class TestColumnMajor:
    @pytest.mark.parametrize("m, k, n", [(1, 64, 8), (3, 96, 24), (37, 200, 136), (5, 1, 1),
                                         (1, 7, 1)])
    @pytest.mark.parametrize("trans_b", [False, True])
    @pytest.mark.parametrize("pad", [0, 3])
    def test_emulated_gemm_is_the_row_major_product(self, m, k, n, trans_b, pad):
        rng = np.random.default_rng(m + k + n)
        b_rows, b_cols = (n, k) if trans_b else (k, n)
        lda, ldb, ldc = k + pad, b_cols + pad, n + pad
        # Row-major operands inside padded flat buffers, as strided device arrays would be.
        a_flat, b_flat = rng.standard_normal(m * lda), rng.standard_normal(b_rows * ldb)
        a = as_strided(a_flat, (m, k), (lda * 8, 8))
        b = as_strided(b_flat, (b_rows, b_cols), (ldb * 8, 8))
        y_flat = np.full(m * ldc, np.nan)
        g = cublaslt.column_major(m, n, k, lda, ldb, ldc, trans_b)
        for lay in (g.a, g.b, g.c):
            assert lay.ld >= lay.rows  # cuBLASLt's requirement for column-major layouts
        # cuBLASLt: D (m x n) = op(A) (m x k) @ op(B) (k x n), all column-major.
        op_a = _col_major(b_flat, g.a).T if g.transa == 1 else _col_major(b_flat, g.a)
        op_b = _col_major(a_flat, g.b).T if g.transb == 1 else _col_major(a_flat, g.b)
        assert op_a.shape == (g.m, g.k) and op_b.shape == (g.k, g.n)
        assert (g.c.rows, g.c.cols) == (g.m, g.n)
        d = as_strided(y_flat, (g.c.rows, g.c.cols), (8, g.c.ld * 8))
        d[...] = op_a @ op_b
        y = as_strided(y_flat, (m, n), (ldc * 8, 8))
        np.testing.assert_allclose(y, a @ (b.T if trans_b else b), rtol=1e-12, atol=1e-12)

    def test_heuristic_result_layout(self):
        # cublasLt.h: algo (uint64_t[8]), size_t workspaceSize, cublasStatus_t state,
        # float wavesCount, int reserved[4].
        r = cublaslt._HeuristicResult
        assert ctypes.sizeof(cublaslt._Algo) == 64
        assert ctypes.sizeof(r) == 96
        assert (r.algo.offset, r.workspaceSize.offset, r.state.offset, r.wavesCount.offset,
                r.reserved.offset) == (0, 64, 72, 76, 80)

    @pytest.mark.parametrize("ptr, want", [(0, 256), (512 * 7, 256), (256 + 128, 128),
                                           (4096 + 6, 2), (1001, 1), (16, 16)])
    def test_alignment(self, ptr, want):
        assert cublaslt.alignment(ptr) == want

    def test_problem_key_separates_what_the_heuristic_reads(self):
        base = dict(device=0, dtype=np.float16, m=37, n=136, k=200, lda=200, ldb=136, ldc=136,
                    trans_b=False, aligns=(256, 256, 256))
        key = cublaslt.problem_key(**base)
        assert key == cublaslt.problem_key(**{**base, "dtype": "float16"})
        changes = dict(device=1, dtype=dtypes.bfloat16, m=38, n=8, k=96, lda=208, ldb=144,
                       ldc=144, trans_b=True, aligns=(16, 256, 256))
        for field, value in changes.items():
            assert cublaslt.problem_key(**{**base, field: value}) != key, field

    def test_cuda_types(self):
        assert [cublaslt.cuda_type(_dtype(d)) for d in DTYPES] == [0, 2, 14]
        assert cublaslt.cuda_type(np.int8) is None and cublaslt.cuda_type(np.float64) is None


# -- GPU ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def lt(cp):
    assert cublaslt.is_available(), "libcublasLt did not load next to CuPy's libcublas"
    return cublaslt


def _nan(cp, shape, dt):
    """A device buffer of NaN (filled on the host: CuPy has no bf16 fill kernel to rely on)."""
    return cp.asarray(np.full(shape, np.nan, dtype=np.float32).astype(_dtype(dt)))


@pytest.mark.gpu
@pytest.mark.parametrize("dt", DTYPES)
class TestMatmul2d:
    @pytest.mark.parametrize("k, n", [(64, 8), (96, 24), (200, 136), (64, 136)])
    @pytest.mark.parametrize("m", [1, 3, 37, 128])
    @pytest.mark.parametrize("trans_b", [False, True])
    def test_every_index_matches_numpy(self, cp, lt, dt, m, k, n, trans_b):
        rng = np.random.default_rng(m * 1000 + k * 7 + n + trans_b)
        a, b, _ = _operands(rng, m, k, n, dt, trans_b)
        count = lt.heuristics(cp.asarray(a), cp.asarray(b), trans_b)
        assert 1 <= count <= lt.MAX_ALGOS, f"heuristic gave {count} algorithms"
        for index in range(count):
            a, b, ref = _operands(rng, m, k, n, dt, trans_b)  # fresh data for every kernel
            out = _nan(cp, (m, n), dt)
            y = lt.matmul2d(cp.asarray(a), cp.asarray(b), index, out=out, trans_b=trans_b)
            assert y is out
            _check(cp.asnumpy(y), ref, dt, f"algorithm {index}/{count}")
            y = lt.matmul2d(cp.asarray(a), cp.asarray(b), index, trans_b=trans_b)
            assert y.dtype == a.dtype and y.flags.c_contiguous
            _check(cp.asnumpy(y), ref, dt, f"algorithm {index}/{count}, own output")

    @pytest.mark.parametrize("m, k, n", [(3, 96, 24), (37, 200, 136)])
    def test_indices_beyond_the_list_return_none(self, cp, lt, dt, m, k, n):
        a, b, _ = _operands(np.random.default_rng(1), m, k, n, dt, False)
        da, db = cp.asarray(a), cp.asarray(b)
        count = lt.heuristics(da, db)
        for index in [*range(count, lt.MAX_ALGOS), lt.MAX_ALGOS, -1]:
            out = _nan(cp, (m, n), dt)
            assert lt.matmul2d(da, db, index, out=out) is None, index
            assert np.isnan(cp.asnumpy(out).astype(np.float32)).all()  # left unwritten

    def test_strided_and_offset_views(self, cp, lt, dt):
        m, k, n = 37, 96, 24
        a, b, ref = _operands(np.random.default_rng(2), m, k, n, dt, False)
        db = cp.asarray(b)
        # Padded rows (lda = k + 11, ldc = n + 5); offset 3 starts A at a pointer the heuristic
        # must be told about (aligned to 2, 4 or 12 bytes, not 256).
        for offset in (0, 3):
            host = np.zeros((m, k + 11), dtype=_dtype(dt))
            host[:, offset:offset + k] = a
            view = cp.asarray(host)[:, offset:offset + k]
            wide_y = _nan(cp, (m, n + 5), dt)
            out = wide_y[:, :n]
            count = lt.heuristics(view, db)
            if count == 0:
                assert lt.matmul2d(view, db, 0, out=out) is None
            for index in range(count):
                y = lt.matmul2d(view, db, index, out=out)
                assert y is out
                _check(cp.asnumpy(y), ref, dt, f"offset {offset}, algorithm {index}/{count}")
            assert np.isnan(cp.asnumpy(wide_y[:, n:]).astype(np.float32)).all()

    def test_bad_calls(self, cp, lt, dt):
        a = cp.asarray(np.ones((4, 8), dtype=_dtype(dt)))
        with pytest.raises(ValueError, match="inner sizes 8 != 9"):
            lt.matmul2d(a, cp.asarray(np.ones((9, 3), dtype=_dtype(dt))), 0)
        with pytest.raises(ValueError, match="row-major"):
            lt.matmul2d(a, cp.asarray(np.ones((8, 3), dtype=_dtype(dt))), 0,
                        out=cp.asarray(np.ones((3, 4), dtype=_dtype(dt))).T)
        other = "float16" if dt == "float32" else "float32"
        assert lt.matmul2d(a, cp.asarray(np.ones((8, 3), dtype=_dtype(other))), 0) is None
        assert lt.matmul2d(a[:0], cp.asarray(np.ones((8, 3), dtype=_dtype(dt))), 0) is None
        ints = cp.ones((4, 8), dtype=np.int32)
        assert lt.matmul2d(ints, cp.ones((8, 3), dtype=np.int32), 0) is None

    def test_captured_graph_replays_every_index(self, cp, lt, dt):
        m, k, n = 37, 200, 136
        rng = np.random.default_rng(3)
        a, b, ref = _operands(rng, m, k, n, dt, True)
        da, db = cp.asarray(a), cp.asarray(b)
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            count = lt.heuristics(da, db, trans_b=True)
            eager = [lt.matmul2d(da, db, i, trans_b=True) for i in range(count)]  # plans, handle
            stream.begin_capture()
            ys = [lt.matmul2d(da, db, i, trans_b=True) for i in range(count)]
            graph = stream.end_capture()
            assert all(y is not None for y in ys)
            graph.launch(stream)
            stream.synchronize()
            for i, (y, want) in enumerate(zip(ys, eager, strict=True)):
                _check(cp.asnumpy(y), cp.asnumpy(want).astype(np.float64), dt, f"replay {i}")
            a2, b2, ref2 = _operands(rng, m, k, n, dt, True)  # the graph reads the new values
            da.set(a2)
            db.set(b2)
            graph.launch(stream)
            stream.synchronize()
        for i, y in enumerate(ys):
            _check(cp.asnumpy(y), ref2, dt, f"replay on new inputs, algorithm {i}")
        assert not np.allclose(ref, ref2)


# -- tactics and builds ------------------------------------------------------------------------

def _layer(op_type, arrays):
    net = Network("one")
    ins = [net.add_constant(f"in{i}", a) for i, a in enumerate(arrays)]
    return net.add_layer(op_type, ins, {})


@pytest.fixture(scope="module")
def cuda(cp, lt):
    from dist_rt.builder import tactics  # noqa: PLC0415
    from dist_rt.runtime.backends import get_backend  # noqa: PLC0415

    backend = get_backend("cuda")
    return tactics, backend.make_run_context()


@pytest.mark.gpu
class TestLtTactics:
    @pytest.mark.parametrize("dt", DTYPES)
    @pytest.mark.parametrize("a_shape, n", [((2, 37, 96), 136), ((1, 64), 24), ((128, 200), 8)])
    def test_applicable_and_matching(self, cp, lt, cuda, dt, a_shape, n):
        tactics, rt = cuda
        rng = np.random.default_rng(4)
        a = rng.standard_normal(a_shape).astype(np.float32).astype(_dtype(dt))
        b = rng.standard_normal((a_shape[-1], n)).astype(np.float32).astype(_dtype(dt))
        layer = _layer("MatMul", [a, b])
        names = [t.name for t in tactics.applicable("cuda", layer, [(a.shape, a.dtype),
                                                                   (b.shape, b.dtype)])]
        count = lt.algo_count(a.dtype, int(np.prod(a_shape[:-1])), n, a_shape[-1])
        assert count >= 1 and names == ["default"] + [f"lt{i}" for i in range(count)]
        ref = a.astype(np.float64) @ b.astype(np.float64)
        for name in names[1:]:
            (y,) = tactics.run_tactic("cuda", layer, name, [cp.asarray(a), cp.asarray(b)], rt)
            _check(cp.asnumpy(y), ref, dt, name)

    def test_batched_b_has_only_the_default(self, cp, lt, cuda):
        tactics, rt = cuda
        a = np.ones((4, 8, 32), np.float16)
        b = np.ones((4, 32, 16), np.float16)
        layer = _layer("MatMul", [a, b])
        specs = [(a.shape, a.dtype), (b.shape, b.dtype)]
        assert [t.name for t in tactics.applicable("cuda", layer, specs)] == ["default"]
        # Run anyway (a plan recorded for other shapes): the default GEMM, never cupy.matmul.
        (y,) = tactics.run_tactic("cuda", layer, "lt0", [cp.asarray(a), cp.asarray(b)], rt)
        np.testing.assert_array_equal(cp.asnumpy(y), np.full((4, 8, 16), 32, np.float16))

    def test_other_shapes_take_the_default(self, cp, lt, cuda, monkeypatch):
        """A recorded lt<i> runs cuBLASLt only at the shapes it was timed at."""
        from dist_rt.runtime.cuda import tactics as cuda_tactics

        _, rt = cuda
        rng = np.random.default_rng(9)
        b = rng.standard_normal((64, 24)).astype(np.float16)
        layer = _layer("MatMul", [np.ones((4, 64), np.float16), b])
        layer.metadata["tactic_shapes"] = [[4, 64], [64, 24]]
        used = []
        real = lt.matmul2d
        monkeypatch.setattr(lt, "matmul2d", lambda *a, **kw: used.append(a[0].shape)
                            or real(*a, **kw))
        for rows in (4, 3):
            a = rng.standard_normal((rows, 64)).astype(np.float16)
            run = cuda_tactics.wrapper(layer, "lt0")
            (y,) = run(layer, [cp.asarray(a), cp.asarray(b)], rt)
            _check(cp.asnumpy(y), a.astype(np.float64) @ b.astype(np.float64), "float16", "lt0")
        assert used == [(4, 64)]

    @pytest.mark.parametrize("dt", ["float16", "bfloat16"])
    def test_tactic_in_captured_graph(self, cp, lt, cuda, dt):
        tactics, rt = cuda
        rng = np.random.default_rng(5)
        a = rng.standard_normal((2, 37, 96)).astype(np.float32).astype(_dtype(dt))
        b = rng.standard_normal((96, 136)).astype(np.float32).astype(_dtype(dt))
        layer = _layer("MatMul", [a, b])
        last = f"lt{lt.algo_count(a.dtype, 74, 136, 96) - 1}"
        da, db = cp.asarray(a), cp.asarray(b)
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            tactics.run_tactic("cuda", layer, last, [da, db], rt)  # eager first: plan, handle
            stream.begin_capture()
            (y,) = tactics.run_tactic("cuda", layer, last, [da, db], rt)
            graph = stream.end_capture()
            a2 = rng.standard_normal(a.shape).astype(np.float32).astype(_dtype(dt))
            da.set(a2)
            graph.launch(stream)
            stream.synchronize()
        assert y.shape == (2, 37, 136)
        _check(cp.asnumpy(y), a2.astype(np.float64) @ b.astype(np.float64), dt, last)


def _mlp(rng, dt, sizes, rows):
    net = Network("lt_mlp")
    h = net.add_input("x", _dtype(dt), (rows, sizes[0]))
    weights = []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32).astype(_dtype(dt))
        weights.append(w)
        h = net.add_matmul(h, net.add_constant(f"w{i}", w))
    net.mark_output(h)
    return net, h.name, weights


def _reference(x, weights):
    for w in weights:  # each layer's output is rounded to the dtype, as on the device
        x = (x.astype(np.float64) @ w.astype(np.float64)).astype(x.dtype)
    return x.astype(np.float64)


PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@pytest.mark.gpu
class TestBuild:
    @pytest.mark.parametrize("dt", ["float32", "float16"])
    def test_level3_build_times_lt_tactics(self, cp, lt, dt, tmp_path):
        rng = np.random.default_rng(6)
        net, out, weights = _mlp(rng, dt, [256, 1024, 136, 96], rows=37)
        cache = tmp_path / "tc.json"
        cfg = BuilderConfig(device="cuda", precision=PRECISION[dt], optimization_level=3,
                            timing_cache=str(cache))
        engine = Builder(cfg).build(net)
        assert len(engine.tactics) == 3
        assert set(engine.tactics.values()) <= {"default"} | LT_NAMES
        entries = json.loads(cache.read_text())["entries"]
        for entry in entries.values():  # every lt tactic ran (a failing one is left out)
            assert {"default", "lt0"} <= set(entry["times_ms"]), entry
        x = rng.standard_normal((37, 256)).astype(np.float32).astype(_dtype(dt))
        with engine.create_execution_context() as ctx:
            for _ in range(2):  # capture, then replay
                got = ctx.execute({"x": x})[out]
        _check(got, _reference(x, weights), dt, "engine")

    @pytest.mark.parametrize("dt", DTYPES)
    def test_recorded_lt_runs_in_the_graph_runner(self, cp, lt, dt):
        rng = np.random.default_rng(7)
        net, out, weights = _mlp(rng, dt, [96, 200, 136], rows=37)
        engine = Builder(BuilderConfig(device="cuda", precision=PRECISION[dt],
                                       optimization_level=0)).build(net)
        matmuls = [layer for layer in engine.network.layers if layer.op_type == "MatMul"]
        assert len(matmuls) == 2
        for layer, (k, n) in zip(matmuls, [(96, 200), (200, 136)], strict=True):
            count = lt.algo_count(_dtype(dt), 37, n, k)
            assert count >= 1
            layer.metadata["tactic"] = f"lt{count - 1}"  # the heuristic's last pick
        with engine.create_execution_context() as ctx, \
                engine.create_execution_context() as eager:
            eager.use_cuda_graph = False
            for seed in range(3):  # capture, then two replays on fresh inputs
                x = (np.random.default_rng(seed).standard_normal((37, 96))
                     .astype(np.float32).astype(_dtype(dt)))
                got = ctx.execute({"x": x})[out]
                _check(got, _reference(x, weights), dt, f"graph, seed {seed}")
                _check(eager.execute({"x": x})[out], _reference(x, weights), dt, "eager")
            entries = list(ctx._cuda_graph_runner.graphs.values())
        assert [e.fallback for e in entries] == [None]

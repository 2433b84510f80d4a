"""CUDA tactics (cuBLAS algorithms, attention paths) and the pass on the GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dist_rt import Builder, BuilderConfig
from dist_rt.builder import tactics
from dist_rt.network import Network

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda():
    cupy = pytest.importorskip("cupy")
    from dist_rt.runtime.backends import get_backend  # noqa: PLC0415

    backend = get_backend("cuda")
    return cupy, backend, backend.make_run_context()


def _layer(op_type, arrays, attributes=None, domain=""):
    net = Network("one")
    ins = [net.add_constant(f"in{i}", a) for i, a in enumerate(arrays)]
    return net.add_layer(op_type, ins, attributes or {}, domain=domain)


def _specs(arrays):
    return [(a.shape, a.dtype) for a in arrays]


MATMULS = [((64, 256), (256, 128)), ((2, 16, 256), (256, 512)), ((4, 8, 32), (4, 32, 16))]


class TestCudaTactics:
    @pytest.mark.parametrize("dtype", ["float32", "float16"])
    @pytest.mark.parametrize("shapes", MATMULS, ids=["2d", "flat3d", "batched"])
    def test_gemm_algos_match(self, cuda, shapes, dtype):
        cupy, backend, rt = cuda
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
        layer = _layer("MatMul", [a, b])
        names = [t.name for t in tactics.applicable("cuda", layer, _specs([a, b]))]
        from dist_rt.runtime.cuda import cublaslt

        if b.ndim == 2:  # cuBLASLt's heuristic list for this problem, one tactic each
            count = cublaslt.algo_count(np.dtype(dtype), a.size // a.shape[-1], b.shape[1],
                                        a.shape[-1], False)
            assert count >= 1 and names == ["default"] + [f"lt{i}" for i in range(count)]
        else:
            assert names == ["default"]
        want = a.astype(np.float32) @ b.astype(np.float32)
        for name in names[1:]:
            out = tactics.run_tactic("cuda", layer, name, [cupy.asarray(a), cupy.asarray(b)], rt)
            tol = 1e-2 if dtype == "float16" else 1e-4
            np.testing.assert_allclose(cupy.asnumpy(out[0]).astype(np.float32), want,
                                       rtol=tol, atol=tol * 10, err_msg=name)

    @pytest.mark.parametrize("s,skv,causal", [(1, 300, 1), (8, 64, 0), (40, 40, 1),
                                              (600, 600, 1), (64, 96, 0)])
    @pytest.mark.parametrize("dtype", ["float32", "float16"])
    def test_attention_paths_match(self, cuda, s, skv, causal, dtype):
        cupy, backend, rt = cuda
        rng = np.random.default_rng(1)
        q = rng.standard_normal((2, 4, s, 64)).astype(dtype)
        k, v = (rng.standard_normal((2, 2, skv, 64)).astype(dtype) for _ in range(2))
        layer = _layer("Attention", [q, k, v], {"causal": causal}, domain="dist_rt")
        want = layer.op.run(layer, [q, k, v], tactics_rt())[0].astype(np.float32)
        dev = [cupy.asarray(x) for x in (q, k, v)]
        names = [t.name for t in tactics.applicable("cuda", layer, _specs([q, k, v]))]
        assert {"default", "cublas_softmax"} <= set(names)
        assert ("flash" in names) == (s <= 64)  # FLASH_TACTIC_MAX_QUERIES
        assert ("causal_chunks" in names) == bool(causal and s == skv and s > 256)
        from dist_rt.runtime.cuda import flash_wgmma  # noqa: PLC0415 - needs CuPy

        assert ("wg" in names) == (dtype == "float16" and flash_wgmma.available())
        tol = 2e-2 if dtype == "float16" else 1e-4
        for name in names[1:]:
            out = tactics.run_tactic("cuda", layer, name, dev, rt)
            np.testing.assert_allclose(cupy.asnumpy(out[0]).astype(np.float32), want,
                                       rtol=tol, atol=tol, err_msg=name)

    def test_pass_and_dispatch(self, cuda, tmp_path):
        cupy, backend, _ = cuda
        rng = np.random.default_rng(2)
        net = Network("gpu_mlp")
        h = net.add_input("x", np.float16, ("batch", 256))
        for i, (a, b) in enumerate([(256, 1024), (1024, 512), (512, 256)]):
            h = net.add_matmul(h, net.add_constant(f"w{i}", (rng.standard_normal((a, b))
                                                             / np.sqrt(a)).astype(np.float16)))
        net.mark_output(h)
        cache = tmp_path / "tc.json"
        cfg = BuilderConfig(device="cuda", precision="fp16", timing_cache=str(cache))
        engine = Builder(cfg).build(net, input_shapes={"x": (64, 256)})
        assert len(engine.tactics) == 3
        obj = json.loads(cache.read_text())
        assert obj["device"] == "cuda" and obj["arch"].startswith("sm_")
        assert len(obj["entries"]) == 3
        again = Builder(cfg).build(net, input_shapes={"x": (64, 256)})
        assert again.tactics == engine.tactics and "3 cached" in again.build_notes["tactics"]
        x = rng.standard_normal((64, 256)).astype(np.float16)
        ref = Builder(BuilderConfig(device="cuda", precision="fp16",
                                    optimization_level=0)).build(net)
        with engine.create_execution_context() as a, ref.create_execution_context() as b:
            got = a.execute({"x": x})[h.name].astype(np.float32)
            want = b.execute({"x": x})[h.name].astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)

    def test_dispatch_follows_recorded_tactic(self, cuda):
        from dist_rt.runtime.backends import cuda as cuda_backend  # noqa: PLC0415
        from dist_rt.runtime.cuda import kernels  # noqa: PLC0415

        a = np.ones((4, 8), np.float32)
        layer = _layer("MatMul", [a, a.T.copy()])
        assert cuda_backend.dispatch(layer)[1] is kernels.matmul
        layer.metadata["tactic"] = "lt0"
        fused = cuda_backend.dispatch(layer)[1]
        assert fused is tactics.find("cuda", layer, "lt0").run


def tactics_rt():
    from dist_rt.ops import RunContext  # noqa: PLC0415

    return RunContext()

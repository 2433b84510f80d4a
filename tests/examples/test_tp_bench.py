"""examples/40_tensor_parallel/bench_tp.py runs on CPU under mpiexec and writes its JSON."""

from __future__ import annotations

import json
import os

import pytest

from tests.mpi_util import run_mpi

pytest.importorskip("mpi4py")

SCRIPT = os.path.join("examples", "40_tensor_parallel", "bench_tp.py")
TINY = ["--hidden", "64", "--heads", "4", "--kv-heads", "2", "--mlp", "128", "--layers", "2",
        "--vocab", "256", "--max-seq", "64", "--dtype", "float32"]


class TestTpBench:
    def test_cpu_two_ranks(self, tmp_path):
        out = tmp_path / "tp.json"
        proc = run_mpi(2, [SCRIPT, "--device", "cpu", "--backend", "mpi", "--skip-torch",
                           *TINY, "--shapes", "1x1,2x8", "--warmup", "1", "--iters", "3",
                           "--workdir", str(tmp_path / "model"), "--json", str(out),
                           "--time-limit", "60"], timeout=60)
        report = json.loads(out.read_text())
        assert report["complete"] is True
        assert report["world_size"] == 2 and report["sizes"] == [1, 2]
        rows = {(r["impl"], r["n"], r["shape"]): r for r in report["results"]}
        assert set(rows) == {("dist_rt", n, s) for n in (1, 2) for s in ("1x1", "2x8")}
        for r in rows.values():
            assert r["median_ms"] > 0 and r["iters"] == 3
            assert r["speedup"] == pytest.approx(rows[("dist_rt", 1, r["shape"])]["median_ms"]
                                                 / r["median_ms"])
            assert r["efficiency"] == pytest.approx(r["speedup"] / r["n"])
        # Megatron plan: two all-reduces per layer (attention, MLP).
        assert report["plans"]["2"] == {"all_reduce": 4}
        assert len(report["checks"]) == 2 and all(c["ok"] for c in report["checks"])
        assert any(t["target"].startswith("decode 1x1: latency N=2") for t in report["targets"])
        assert [p["name"] for p in report["phases"]][:3] == ["setup", "generate", "parse"]
        assert "torch skipped" in " ".join(report["notes"])
        assert "| dist_rt | 2 | 2x8 |" in proc.stdout
        assert (tmp_path / "model" / "llama.onnx").exists()  # --workdir is kept

    def test_bad_sizes_exit_2(self, tmp_path):
        proc = run_mpi(2, [SCRIPT, "--device", "cpu", *TINY, "--sizes", "1,4", "--shapes", "1x1",
                           "--skip-torch", "--json", str(tmp_path / "x.json")], timeout=30,
                       check=False)
        assert proc.returncode != 0
        assert "each N must be in [1, 2]" in proc.stderr


@pytest.mark.multigpu
def test_profile_tp_two_gpus(tmp_path):
    """profile_tp.py builds the TP engine on 2 GPUs and prints rank 0's kernel table."""
    proc = run_mpi(2, [os.path.join("examples", "40_tensor_parallel", "profile_tp.py"),
                       *TINY[:-2], "--dtype", "float16", "--shapes", "1x1", "--iters", "3",
                       "--warmup", "1", "--workdir", str(tmp_path / "model")],
                   timeout=180, env={"NCCL_NVLS_ENABLE": "0"})
    assert "== N=2 1x1: wall" in proc.stdout and "kernels/step" in proc.stdout

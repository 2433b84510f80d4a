"""The numbered examples run and succeed (STYLE.md rule 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_00_single_rank(tmp_path, precision):
    pytest.importorskip("onnxruntime")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "00_single_rank", "build_and_run.py"),
         "--precision", precision, "--workdir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "max abs error vs onnxruntime" in proc.stdout
    assert (tmp_path / "mlp.r0.plan").exists()


def test_50_quantized_smoke(tmp_path):
    """``--small``: the CPU smoke run without a GPU, small shapes with one."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "w8.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "50_quantized", "bench_weight_only.py"),
         "--small", "--iters", "5", "--warmup", "2", "--burst", "4", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "max abs logit diff" in proc.stdout
    model = json.loads(out.read_text())["model"]
    assert model["max_abs_logit_diff"] <= 0.05 * (1 + model["max_abs_logit"])


def _run_example(path, args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", *path), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.gpu
def test_60_builder_small(tmp_path):
    out = tmp_path / "builder.json"
    proc = _run_example(("60_builder", "bench_builder.py"),
                        ["--small", "--shapes", "1x1,2x40", "--iters", "3", "--rounds", "2",
                         "--json", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["cache"]["warm_s"] > 0 and set(report["levels"]) == {"0", "1", "2", "3"}
    for row in report["levels"].values():
        for shape in row["shapes"].values():
            assert shape["max_diff_vs_first"] < 0.05 and shape["ms"] > 0


@pytest.mark.gpu
def test_20_profile_kernels_small():
    proc = _run_example(("20_llama_vs_pytorch", "profile_kernels.py"),
                        ["--small", "--shapes", "1x1,2x40", "--iters", "2"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kernels/step" in proc.stdout and "arena" in proc.stdout


@pytest.mark.gpu
def test_20_ab_decode_small():
    """Every variant runs, and their logits agree (the GEMV and PDL change no values)."""
    proc = _run_example(("20_llama_vs_pytorch", "ab_decode.py"),
                        ["--small", "--shapes", "1x1,2x1,3x5", "--rounds", "1", "--iters", "3",
                         "--variants", "cublas,cublas+pdl,gemv,gemv+pdl,gemv+pdl+l2:2,"
                         "gemv+pdl-glu"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "x" in line
            and "shape" not in line]
    assert len(rows) == 3
    for row in rows:
        cells = row.strip("| ").split("|")
        assert len(cells) == 8 and float(cells[-1]) < 0.05, row


def test_20_ab_decode_rejects_an_unknown_variant():
    proc = _run_example(("20_llama_vs_pytorch", "ab_decode.py"),
                        ["--small", "--variants", "gemv+pdl+l2:lots"])
    assert proc.returncode != 0 and "'lots' is not a number of MiB" in proc.stderr
    proc = _run_example(("20_llama_vs_pytorch", "ab_decode.py"), ["--variants", "cutlass"])
    assert proc.returncode != 0 and "unknown variant 'cutlass'" in proc.stderr

"""The numbered examples run and succeed (STYLE.md rule 11)."""

from __future__ import annotations

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

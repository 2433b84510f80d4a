"""python -m dist_rt.inspect: text and JSON views of a plan file; damaged files exit 1."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dist_rt import Builder, BuilderConfig, inspect
from dist_rt.network import Network


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    net = Network("tiny")
    x = net.add_input("x", np.float32, (2, 4))
    w = net.add_constant("w", np.ones((4, 3), np.float32))
    net.mark_output(net.add_activation(net.add_matmul(x, w), "Relu"))
    path = tmp_path_factory.mktemp("plan") / "tiny.r0.plan"
    Builder(BuilderConfig()).build(net).save(path)
    return path


def test_text(plan, capsys):
    assert inspect.main([str(plan)]) == 0
    out = capsys.readouterr().out
    assert "rank 0/1" in out and "[MatMul]" in out and "w: float32(4, 3) const" in out
    assert "Memory plan: arena" in out and "lower bound" in out


def test_json(plan, capsys):
    assert inspect.main([str(plan), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [lay["op"] for lay in info["layers"]] == ["MatMul", "Relu"]
    assert info["engine"]["world_size"] == 1 and info["memory_plan"]["arena_bytes"] > 0
    assert info["bindings"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [2, 4]}]


def test_damaged_file_is_one_line(plan, tmp_path):
    bad = tmp_path / "bad.plan"
    data = bytearray(plan.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "dist_rt.inspect", str(bad)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("dist_rt.inspect: error:") and proc.stderr.count("\n") == 1

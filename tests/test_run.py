"""The CLI ``python -m dist_rt.run``: report, JSON, outputs vs onnxruntime, engines, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dist_rt.run import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mlp(path, rng, op="Relu", domain=""):
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W1", (7, 13)), ("B1", (13,)), ("W2", (13, 5)))]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]),
             helper.make_node("Add", ["h", "B1"], ["hb"]),
             helper.make_node(op, ["hb"], ["r"], domain=domain),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], inits)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=10), path)
    return str(path)


def _cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "dist_rt.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def model(tmp_path):
    return _mlp(tmp_path / "mlp.onnx", np.random.default_rng(0))


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if not ln.startswith("[dist_rt")]
    assert len(lines) == 1 and lines[0].startswith("dist_rt: error: "), err
    assert "Traceback" not in err
    return lines[0]


class TestSubprocess:
    def test_report_json_and_outputs_match_onnxruntime(self, model, tmp_path):
        ort = pytest.importorskip("onnxruntime")
        x = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32)
        np.savez(tmp_path / "in.npz", x=x)
        proc = _cli(model, "--inputs", str(tmp_path / "in.npz"), "--iterations", "3",
                    "--warmup", "1", "--json", str(tmp_path / "r.json"), "--save-outputs",
                    str(tmp_path / "out.npz"), "--check")
        assert proc.returncode == 0, proc.stderr
        for word in ("Throughput", "qps", "median", "p99", "Host wall time", "Compute time",
                     "Memory rank 0", "max abs error"):
            assert word in proc.stdout
        assert "build" in proc.stderr and "memory_plan" in proc.stderr   # progress lines
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["iterations"] == 3 and report["world_size"] == 1
        assert set(report["latency_ms"]) == {"min", "mean", "median", "p90", "p99", "max"}
        assert report["check"]["max_abs_error"] < 1e-5
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        ref = sess.run(None, {"x": x})[0]
        with np.load(tmp_path / "out.npz") as out:
            np.testing.assert_allclose(out["y"], ref, rtol=1e-5, atol=1e-5)

    def test_malformed_onnx_one_line(self, tmp_path):
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"this is not a protobuf \xff\xfe" * 10)
        proc = _cli(str(bad))
        assert proc.returncode == 1
        assert "not a valid ONNX model" in _one_error_line(proc.stderr)


class TestInProcess:
    def _err(self, capsys, argv):
        assert main(argv) == 1
        return _one_error_line(capsys.readouterr().err)

    def test_save_then_load_engine(self, model, tmp_path, capsys):
        out1, out2 = tmp_path / "a.npz", tmp_path / "b.npz"
        common = ["--shapes", "x:3x7", "--iterations", "1", "--warmup", "0"]
        assert main([model, "--save-engine", str(tmp_path / "eng"), "--save-outputs",
                     str(out1), *common]) == 0
        assert (tmp_path / "eng" / "engine.r0.plan").exists()
        assert main([model, "--load-engine", str(tmp_path / "eng"), "--save-outputs",
                     str(out2), *common]) == 0
        with np.load(out1) as a, np.load(out2) as b:
            np.testing.assert_array_equal(a["y"], b["y"])
        capsys.readouterr()

    def test_damaged_plan(self, model, tmp_path, capsys):
        assert main([model, "--save-engine", str(tmp_path), "--iterations", "1"]) == 0
        plan = tmp_path / "engine.r0.plan"
        data = bytearray(plan.read_bytes())
        data[-3] ^= 1
        plan.write_bytes(bytes(data))
        capsys.readouterr()
        assert "checksum mismatch" in self._err(capsys, [model, "--load-engine", str(tmp_path)])

    def test_unsupported_op(self, tmp_path, capsys):
        path = _mlp(tmp_path / "u.onnx", np.random.default_rng(0), op="Frobnicate",
                    domain="com.example")
        assert "Frobnicate" in self._err(capsys, [path])

    @pytest.mark.parametrize("argv_tail, match", [
        (["--shapes", "z:3x7"], r"unknown input\(s\) \['z'\]"),
        (["--shapes", "x:3x8"], "input 'x'.*dim 1 must be 7"),
        (["--shapes", "x3x7"], "cannot parse"),
        (["--inputs", "/nonexistent.npz"], "does not exist"),
    ])
    def test_bad_inputs(self, model, capsys, argv_tail, match):
        import re
        assert re.search(match, self._err(capsys, [model, *argv_tail]))

    def test_wrong_input_dtype_and_name(self, model, tmp_path, capsys):
        np.savez(tmp_path / "f64.npz", x=np.zeros((2, 7)))
        assert "dtype float64, expected float32" in self._err(
            capsys, [model, "--inputs", str(tmp_path / "f64.npz")])
        np.savez(tmp_path / "name.npz", q=np.zeros((2, 7), np.float32))
        assert "'q'" in self._err(capsys, [model, "--inputs", str(tmp_path / "name.npz")])

    def test_default_model(self, capsys):
        from dist_rt.errors import UnsupportedOpError
        from dist_rt.models import default_model
        from dist_rt.onnx.importer import parse_onnx
        try:
            parse_onnx(default_model())
        except UnsupportedOpError as exc:
            pytest.skip(f"default model needs ops not registered yet: {exc}"[:120])
        assert main(["--iterations", "1", "--warmup", "0", "--device", "cpu"]) == 0
        assert "Throughput" in capsys.readouterr().out


def test_two_ranks_replicated(model):
    from mpi_util import run_mpi
    proc = run_mpi(2, ["-m", "dist_rt.run", model, "--plan", "replicate", "--iterations", "2",
                       "--check"], timeout=120)
    assert "ranks: 2" in proc.stdout and "Memory rank 1" in proc.stdout
    assert "max abs error = 0.000e+00" in proc.stdout


@pytest.mark.parametrize("ranks", [4, 8], ids=["readme_4", "design_8"])
def test_default_model_sharded(ranks, tmp_path):
    """The README's main job (the embedded default over 4 ranks) and the 8-rank design
    target, on CPU under mpiexec: every rank holds a shard (less than the whole model's
    weights), the collectives run, and the outputs match the unsharded reference."""
    import json

    from mpi_util import run_mpi

    from dist_rt.run import main

    one = tmp_path / "one.json"
    assert main(["--device", "cpu", "--iterations", "1", "--warmup", "0",
                 "--json", str(one)]) == 0
    whole = json.loads(one.read_text())["memory"][0]["weight_bytes"]
    out = tmp_path / f"n{ranks}.json"
    proc = run_mpi(ranks, ["-m", "dist_rt.run", "--device", "cpu", "--check", "--iterations",
                           "2", "--warmup", "0", "--json", str(out)], timeout=240)
    report = json.loads(out.read_text())
    assert f"ranks: {ranks}" in proc.stdout and report["world_size"] == ranks
    assert "threads BLAS threads" in proc.stderr  # launch/threads.py gave each rank a share
    assert [m["rank"] for m in report["memory"]] == list(range(ranks))
    assert all(0 < m["weight_bytes"] < whole for m in report["memory"])
    assert report["collectives_time_ms"] > 0
    assert report["check"]["max_abs_error"] < 1e-4

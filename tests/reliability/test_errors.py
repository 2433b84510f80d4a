"""Issue 8: every user-facing failure raises a ``dist_rt.errors`` type; CLIs print one line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from _fuzz_common import base_bytes, build_plan, mlp_model
from onnx import helper

from collectives import LocalCommunicator, create_communicator
from dist_rt import Builder, BuilderConfig, Engine, errors, parse_onnx
from dist_rt.network import Network

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "WORLD_SIZE"):
        env.pop(var, None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _assert_one_line(proc: subprocess.CompletedProcess, prefix: str, words: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, proc.stderr
    assert words.lower() in lines[0].lower(), lines[0]


class TestTypedErrors:
    def test_parse(self):
        with pytest.raises(errors.ParseError, match="not a valid ONNX model"):
            parse_onnx(b"\x08\x07garbage")

    def test_missing_file(self, tmp_path):
        with pytest.raises(errors.ParseError, match="does not exist"):
            parse_onnx(str(tmp_path / "nope.onnx"))

    def test_unsupported_op(self):
        m = mlp_model()
        m.graph.node[2].op_type = "NoSuchOp"
        with pytest.raises(errors.ModelError, match="NoSuchOp"):
            parse_onnx(m)

    def test_shape(self):
        m = mlp_model()
        m.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(
            np.zeros((9, 16), np.float32), "w1"))
        with pytest.raises(errors.ModelError):
            parse_onnx(m)

    def test_graph_cycle(self):
        m = mlp_model()
        m.graph.node[0].input[0] = "h2"
        with pytest.raises(errors.GraphError, match="cycle"):
            parse_onnx(m)

    def test_negative_dim_is_an_error_not_an_abort(self):
        # onnx.shape_inference hits a C++ assert (process abort) on negative dims.
        m = mlp_model()
        m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -2
        with pytest.raises(errors.ParseError, match="negative dim"):
            parse_onnx(m)

    def test_unknown_initializer_dtype(self):
        m = mlp_model()
        m.graph.initializer[0].data_type = 40
        with pytest.raises(errors.ParseError):
            parse_onnx(m)

    def test_huge_range_is_not_computed_at_build_time(self):
        nodes = [helper.make_node("Range", ["s", "l", "d"], ["r"]),
                 helper.make_node("Cast", ["r"], ["y"], to=onnx.TensorProto.FLOAT)]
        inits = [onnx.numpy_helper.from_array(np.array(v, np.int64), n)
                 for n, v in (("s", 0), ("l", 2**40), ("d", 1))]
        g = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info(
            "y", onnx.TensorProto.FLOAT, ["n"])], inits)
        net = parse_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
        assert net.outputs[0].shape == (2**40,)

    def test_non_utf8_dim_name(self):
        m = mlp_model()
        data = m.SerializeToString().replace(b"batch", b"\xe1atch")
        with pytest.raises(errors.ParseError, match="not UTF-8"):
            parse_onnx(data)

    def test_infinite_range_is_a_shape_error(self):
        nodes = [helper.make_node("Range", ["s", "l", "d"], ["y"])]
        inits = [onnx.numpy_helper.from_array(np.array(v, np.float32), n)
                 for n, v in (("s", 0), ("l", np.inf), ("d", 1))]
        g = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info(
            "y", onnx.TensorProto.FLOAT, ["n"])], inits)
        with pytest.raises(errors.ShapeError):
            parse_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))

    def test_plan_file(self, tmp_path):
        (tmp_path / "x.plan").write_bytes(b"DISTRTPL" + b"\0" * 10)
        with pytest.raises(errors.PlanFileError, match="truncated"):
            Engine.load(tmp_path / "x.plan")

    def test_version(self, tmp_path):
        path = tmp_path / "m.plan"
        build_plan(str(path))
        data = bytearray(path.read_bytes())
        data[8] = 7
        path.write_bytes(bytes(data))
        with pytest.raises(errors.VersionMismatchError, match="version 7"):
            Engine.load(path)

    def test_communicator_mismatch(self):
        net = parse_onnx(base_bytes(0))
        net.metadata.update(rank=1, world_size=2)
        engine = Builder(BuilderConfig(device="cpu")).build(net)
        with engine.create_execution_context() as ctx:
            with pytest.raises(errors.CommunicatorMismatchError, match="rank 1 of 2"):
                ctx.set_communicator(LocalCommunicator())

    def test_rank_failure_and_timeout_types(self):
        assert issubclass(errors.RankFailureError, errors.CommunicatorError)
        assert issubclass(errors.CollectiveTimeoutError, errors.CommunicatorError)
        assert issubclass(errors.CommunicatorMismatchError, errors.PlanMismatchError)

    def test_nccl_without_cupy_is_a_launch_error(self):
        pytest.importorskip("mpi4py")
        try:
            import cupy  # noqa: F401, PLC0415
            pytest.skip("CuPy is installed")
        except ImportError:
            pass
        with pytest.raises(errors.LaunchError, match="CuPy"):
            create_communicator("nccl")

    def test_messages_are_never_empty(self):
        net = Network("n")
        with pytest.raises(errors.GraphError, match=r"\w+"):
            net.validate()


class TestCliOneLine:
    def test_run_bad_model(self, tmp_path):
        (tmp_path / "bad.onnx").write_bytes(b"garbage")
        _assert_one_line(_cli(["-m", "dist_rt.run", "bad.onnx"], str(tmp_path)),
                         "dist_rt: error:", "not a valid ONNX model")

    def test_run_missing_model(self, tmp_path):
        _assert_one_line(_cli(["-m", "dist_rt.run", "none.onnx"], str(tmp_path)),
                         "dist_rt: error:", "does not exist")

    def test_run_damaged_engine(self, tmp_path):
        (tmp_path / "eng").mkdir()
        (tmp_path / "eng" / "engine.r0.plan").write_bytes(b"\0" * 200)
        _assert_one_line(_cli(["-m", "dist_rt.run", "--load-engine", "eng"], str(tmp_path)),
                         "dist_rt: error:", "not a dist_rt plan file")

    def test_run_bad_shapes(self, tmp_path):
        (tmp_path / "m.onnx").write_bytes(base_bytes(0))
        _assert_one_line(_cli(["-m", "dist_rt.run", "m.onnx", "--shapes", "x:2xz"],
                              str(tmp_path)), "dist_rt: error:", "--shapes")

    def test_bench_nccl_without_cupy(self, tmp_path):
        try:
            import cupy  # noqa: F401, PLC0415
            pytest.skip("CuPy is installed")
        except ImportError:
            pass
        _assert_one_line(_cli(["-m", "collectives.bench", "--backend", "nccl"], str(tmp_path)),
                         "collectives.bench: error:", "CuPy")

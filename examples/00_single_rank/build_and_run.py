"""Example 00: build a single-rank engine from an ONNX model, save, load, run, compare.

    python examples/00_single_rank/build_and_run.py [--precision fp16] [--workdir DIR]

Steps: write a small MLP with ``onnx.helper``; import it (``dist_rt.parse_onnx``); build an
engine (``Builder``); save the plan file and load it back (``Engine.save``/``Engine.load``);
run it (``ExecutionContext.execute``); compare with onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import dist_rt


def make_model(path: str, seed: int = 0) -> None:
    """Write ``y = relu(x @ W1 + b1) @ W2`` with x of shape (batch, 32) to ``path``."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32), n)
             for n, s in (("W1", (32, 64)), ("b1", (64,)), ("W2", (64, 10)))]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              ir_version=10)  # onnxruntime reads IR <= 10 everywhere
    onnx.save(model, path)


def main(argv: list[str] | None = None) -> int:
    """Run the example; returns 0 when dist_rt matches onnxruntime."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="dist_rt_ex00_")
    model_path = os.path.join(workdir, "mlp.onnx")
    plan_path = os.path.join(workdir, "mlp.r0.plan")

    make_model(model_path)
    network = dist_rt.parse_onnx(model_path)
    config = dist_rt.BuilderConfig(device="cpu", precision=args.precision)
    engine = dist_rt.Builder(config).build(network, input_shapes={"x": (4, 32)})
    engine.save(plan_path)
    engine = dist_rt.Engine.load(plan_path)          # weights are memory-mapped
    print(engine.summary())

    x = np.random.default_rng(1).standard_normal((4, 32)).astype(np.float32)
    with engine.create_execution_context() as ctx:
        y = ctx.execute({"x": x})["y"]

    import onnxruntime as ort  # noqa: PLC0415 - only the comparison needs it

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": x})[0]
    err = float(np.max(np.abs(y - ref)))
    tol = 1e-5 if args.precision == "fp32" else 5e-2
    print(f"max abs error vs onnxruntime: {err:.3e} (tolerance {tol})")
    return 0 if err <= tol else 1


if __name__ == "__main__":
    sys.exit(main())

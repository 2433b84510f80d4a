"""A/B of the decode GEMV and programmatic dependent launch on the ~1B Llama (dist_rt only).

One engine (level 2, fp16, CUDA graphs); for each variant a fresh execution context is
created after switching:

* ``cublas``: ``gemv.MAX_ROWS = 0`` (every MatMul on cuBLAS, the weights still stored
  transposed), kernels launched plainly (``DIST_RT_PDL=0``);
* ``cublas+pdl``: the same with PDL launches;
* ``gemv`` / ``gemv+pdl``: the decode GEMV (``runtime/cuda/gemv.py``) for up to two rows.

Variants take turns over ``--rounds`` rounds (contexts differ by a few percent); prints the
median of the rounds' medians per shape and the largest logits difference to ``cublas``.

Usage: ``python examples/20_llama_vs_pytorch/ab_decode.py [--small] [--shapes 1x1,2x1]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

VARIANTS = {"cublas": (0, "0"), "cublas+pdl": (0, "1"), "gemv": (None, "0"),
            "gemv+pdl": (None, "1")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny model (smoke test)")
    parser.add_argument("--shapes", default="1x1,2x1,4x1,16x1,1x128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()

    import cupy
    import onnx
    from bench import median_ms, model_config

    import dist_rt
    from dist_rt import Builder, BuilderConfig
    from dist_rt.models.llama import make_llama, sample_inputs
    from dist_rt.runtime.cuda import gemv

    cfg = model_config(args.small)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    default_rows = gemv.MAX_ROWS
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama.onnx")
        onnx.save_model(make_llama(cfg, external_data_dir=tmp), path)
        engine = Builder(BuilderConfig(device="cuda", precision="fp16",
                                       optimization_level=2)).build(dist_rt.parse_onnx(path))
        times: dict[tuple, list[float]] = {}
        outs: dict[tuple, np.ndarray] = {}
        try:
            for _ in range(args.rounds):
                for name, (rows, pdl) in VARIANTS.items():
                    gemv.MAX_ROWS = default_rows if rows is None else rows
                    os.environ["DIST_RT_PDL"] = pdl
                    with engine.create_execution_context() as ctx:
                        for b, s in shapes:
                            ids = cupy.asarray(sample_inputs(cfg, b, s, seed=b + s)["input_ids"])

                            def step(ctx=ctx, ids=ids):
                                return ctx.execute({"input_ids": ids},
                                                   copy_outputs=False)["logits"]

                            outs.setdefault((name, b, s), cupy.asnumpy(step()).astype(np.float32))
                            times.setdefault((name, b, s), []).append(
                                median_ms(step, args.iters, 3, cupy.cuda.Event,
                                          cupy.cuda.Device().synchronize))
        finally:
            gemv.MAX_ROWS = default_rows
            os.environ.pop("DIST_RT_PDL", None)
    print(f"median ms over {args.rounds} contexts each (level 2, fp16, CUDA graphs)")
    print("| shape | " + " | ".join(VARIANTS) + " | max diff vs cublas |")
    print("|---" * (len(VARIANTS) + 2) + "|")
    for b, s in shapes:
        diff = max(float(np.abs(outs[(n, b, s)] - outs[("cublas", b, s)]).max())
                   for n in VARIANTS)
        cells = [f"{np.median(times[(n, b, s)]):.3f}" for n in VARIANTS]
        print(f"| {b}x{s} | " + " | ".join(cells) + f" | {diff:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

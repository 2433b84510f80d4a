"""A/B of the decode GEMV and programmatic dependent launch on the ~1B Llama (dist_rt only).

One engine (level 2, fp16, CUDA graphs; two with ``-glu`` variants); for each variant a
fresh execution context is created after switching:

* ``cublas``: ``gemv.MAX_ROWS = 0`` (every MatMul on cuBLAS, the weights still stored
  transposed), kernels launched plainly (``DIST_RT_PDL=0``);
* ``cublas+pdl``: the same with PDL launches;
* ``gemv`` / ``gemv+pdl``: the decode GEMV (``runtime/cuda/gemv.py``) for up to two rows;
* any of those with ``+l2:MiB``: each GEMV warms the first MiB of the next GEMV's weight in
  L2 (``runtime/cuda/l2_prefetch.py``); without the suffix the prefetch is off;
* any of those ending in ``-glu``: a second engine built without ``fuse_matmul_silu`` (the
  gate/up GEMM and the SiLU gate stay two layers, ``builder/passes/fuse_matmul_silu.py``).

Variants take turns over ``--rounds`` rounds (contexts differ by a few percent); prints the
median of the rounds' medians per shape and the largest logits difference to ``cublas``.

Usage: ``python examples/20_llama_vs_pytorch/ab_decode.py [--small] [--shapes 1x1,2x1]
[--variants cublas,gemv+pdl,gemv+pdl+l2:8]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from unittest import mock

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

#: Base variant -> (gemv.MAX_ROWS, or None for its default; DIST_RT_PDL).
BASES = {"cublas": (0, "0"), "cublas+pdl": (0, "1"), "gemv": (None, "0"),
         "gemv+pdl": (None, "1")}


def parse_variant(name: str) -> tuple[int | None, str, str, bool]:
    """``base[+l2:MiB][-glu]`` -> (MAX_ROWS, DIST_RT_PDL, DIST_RT_L2_PREFETCH_MIB, fused
    gate)."""
    glu = not name.endswith("-glu")
    base, _, mib = name.removesuffix("-glu").partition("+l2:")
    if base not in BASES:
        raise SystemExit(f"ab_decode: unknown variant {name!r}; expected one of "
                         f"{sorted(BASES)}, optionally with +l2:MiB and -glu")
    try:
        mib = str(float(mib)) if mib else "0"
    except ValueError:
        raise SystemExit(f"ab_decode: variant {name!r}: {mib!r} is not a number of MiB") \
            from None
    return (*BASES[base], mib, glu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny model (smoke test)")
    parser.add_argument("--shapes", default="1x1,2x1,4x1,16x1,1x128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--variants", default=",".join(BASES),
                        help="comma list of cublas, cublas+pdl, gemv, gemv+pdl, each "
                             "optionally +l2:MiB, then -glu (the first is the logits "
                             "reference)")
    args = parser.parse_args()
    variants = {name: parse_variant(name) for name in args.variants.split(",")}
    first = next(iter(variants))

    import cupy
    import onnx
    from bench import median_ms, model_config

    import dist_rt
    from dist_rt import Builder, BuilderConfig
    from dist_rt.builder.passes import fuse_matmul_silu
    from dist_rt.models.llama import make_llama, sample_inputs
    from dist_rt.runtime.cuda import gemv

    cfg = model_config(args.small)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    default_rows = gemv.MAX_ROWS
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama.onnx")
        onnx.save_model(make_llama(cfg, external_data_dir=tmp), path)
        engines = {}
        for glu in sorted({v[3] for v in variants.values()}):
            with mock.patch.object(fuse_matmul_silu, "on_cuda",
                                   fuse_matmul_silu.on_cuda if glu else lambda state: False):
                engines[glu] = Builder(BuilderConfig(device="cuda", precision="fp16",
                                                     optimization_level=2)).build(
                    dist_rt.parse_onnx(path))
        times: dict[tuple, list[float]] = {}
        outs: dict[tuple, np.ndarray] = {}
        try:
            for _ in range(args.rounds):
                for name, (rows, pdl, mib, glu) in variants.items():
                    gemv.MAX_ROWS = default_rows if rows is None else rows
                    os.environ["DIST_RT_PDL"] = pdl
                    os.environ["DIST_RT_L2_PREFETCH_MIB"] = mib
                    with engines[glu].create_execution_context() as ctx:
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
            os.environ.pop("DIST_RT_L2_PREFETCH_MIB", None)
    print(f"median ms over {args.rounds} contexts each (level 2, fp16, CUDA graphs)")
    print("| shape | " + " | ".join(variants) + f" | max diff vs {first} |")
    print("|---" * (len(variants) + 2) + "|")
    for b, s in shapes:
        diff = max(float(np.abs(outs[(n, b, s)] - outs[(first, b, s)]).max())
                   for n in variants)
        cells = [f"{np.median(times[(n, b, s)]):.3f}" for n in variants]
        print(f"| {b}x{s} | " + " | ".join(cells) + f" | {diff:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

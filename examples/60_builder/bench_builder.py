"""Builder figures on one GPU: the timing cache (cold vs warm build) and what the fusion
passes buy (optimization levels 0..3) on the ~1B Llama of example 20.

1. Generate the model (fp16, random weights), parse it once (weights memory-mapped).
2. Build at level 3 (tactic timing) with an empty timing cache file, then again with the
   cache that build wrote: wall times, their ratio, and how many layers had a tactic chosen.
3. Build at levels 0, 1, 2 and 3 and time each engine (CUDA graphs, CUDA events, median of
   ``--iters`` after warm-up) at every ``--shapes`` entry; logits of each level are
   compared with level 0.

Usage: ``python examples/60_builder/bench_builder.py [--small] [--json out.json]``
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "20_llama_vs_pytorch"))

from bench import median_ms, model_config  # noqa: E402 - example 20's model and timer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny model (smoke test)")
    parser.add_argument("--shapes", default="1x1,1x128,8x2048")
    parser.add_argument("--build-shape", default="1x128",
                        help="input shape the level-3 tactics are timed at")
    parser.add_argument("--levels", default="0,1,2,3")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import cupy
    import onnx

    import dist_rt
    from dist_rt import Builder, BuilderConfig
    from dist_rt.models.llama import make_llama, sample_inputs

    cfg = model_config(args.small)
    shape_of = lambda s: tuple(int(v) for v in s.split("x"))  # noqa: E731
    shapes = [shape_of(s) for s in args.shapes.split(",")]
    levels = [int(v) for v in args.levels.split(",")]
    report: dict = {"device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
                    "config": str(cfg), "cache": {}, "levels": {}}
    print(f"device: {report['device']}; {cfg}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama.onnx")
        onnx.save_model(make_llama(cfg, external_data_dir=tmp), path)
        net = dist_rt.parse_onnx(path)
        build_shapes = {"input_ids": shape_of(args.build_shape)}

        cache = os.path.join(tmp, "timing.cache")
        times = []
        for attempt in ("cold", "warm"):
            t0 = time.perf_counter()
            engine = Builder(BuilderConfig(device="cuda", precision="fp16",
                                           optimization_level=3, timing_cache=cache)).build(
                net, input_shapes=build_shapes)
            times.append(time.perf_counter() - t0)
            print(f"level-3 build, {attempt} timing cache: {times[-1]:.2f} s; "
                  f"{engine.build_notes.get('tactics', '')}", flush=True)
            chosen = {k: v for k, v in engine.tactics.items()}
            kinds = collections.Counter(f"{engine.network.layer(k).op_type}:{v}"
                                        for k, v in chosen.items())
            print(f"  chosen tactics: {dict(sorted(kinds.items()))}", flush=True)
            del engine
            gc.collect()
        report["cache"] = {"cold_s": times[0], "warm_s": times[1],
                           "speedup": times[0] / times[1], "tactics": len(chosen),
                           "cache_bytes": os.path.getsize(cache)}
        print(f"timing cache: cold {times[0]:.2f} s / warm {times[1]:.2f} s = "
              f"{times[0] / times[1]:.1f}x (target >= 3x; warm < 20 s)", flush=True)

        ref: dict[str, np.ndarray] = {}
        for level in levels:
            t0 = time.perf_counter()
            config = BuilderConfig(device="cuda", precision="fp16", optimization_level=level,
                                   timing_cache=cache if level == 3 else None)
            engine = Builder(config).build(net, input_shapes=build_shapes)
            built = time.perf_counter() - t0
            row = {"build_s": built, "layers": len(engine.network.layers), "shapes": {}}
            ctx = engine.create_execution_context()
            for batch, seq in shapes:
                shape = f"{batch}x{seq}"
                ids = cupy.asarray(sample_inputs(cfg, batch, seq, seed=3)["input_ids"])
                try:
                    logits = ctx.execute({"input_ids": ids})["logits"].astype(np.float32)
                    diff = (float(np.abs(logits - ref[shape]).max()) if shape in ref
                            else 0.0)
                    ref.setdefault(shape, logits)
                    ms = median_ms(lambda ids=ids, ctx=ctx: ctx.execute({"input_ids": ids},
                                                                        copy_outputs=False),
                                   args.iters, 3, cupy.cuda.Event,
                                   cupy.cuda.Device().synchronize)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    print(f"  level {level} {shape} failed: {type(exc).__name__}: {exc}")
                    ms, diff = float("nan"), float("nan")
                row["shapes"][shape] = {"ms": ms, "max_diff_vs_level0": diff}
                print(f"  level {level} {shape}: {ms:.3f} ms, max|diff| vs level "
                      f"{levels[0]} {diff:.4f}", flush=True)
            report["levels"][str(level)] = row
            print(f"level {level}: built in {built:.1f} s, {row['layers']} layers", flush=True)
            ctx.close()
            del ctx, engine
            gc.collect()
            cupy.get_default_memory_pool().free_all_blocks()

    print("\n| level | layers | " + " | ".join(f"{b}x{s} ms" for b, s in shapes) + " |")
    print("|---|---|" + "---|" * len(shapes))
    for level, row in report["levels"].items():
        print(f"| {level} | {row['layers']} | "
              + " | ".join(f"{row['shapes'][f'{b}x{s}']['ms']:.3f}" for b, s in shapes) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

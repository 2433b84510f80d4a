"""Builder figures on one GPU: the timing cache (cold vs warm build) and what the fusion
passes buy (optimization levels 0..3) on the ~1B Llama of example 20.

1. Generate the model (fp16, random weights), parse it once (weights memory-mapped).
2. Timing cache: a first level-3 build without a cache file compiles every kernel the
   tactics and the engine use (NVRTC, then CuPy's disk cache), so that what follows
   compares timing against no timing, not compiling against not compiling. Then a build
   with an empty cache file ("cold": times every tactic, writes the file) and one reading
   it ("warm"): wall times, their ratio, and the tactics chosen. The first build's time is
   printed too (what a first build on a fresh machine costs).
3. Build at levels 0, 1, 2 and 3 and time each engine (CUDA graphs, CUDA events, median of
   ``--iters`` after warm-up) at every ``--shapes`` entry, the levels taking turns for
   ``--rounds`` rounds with a fresh execution context each (one context's median moves by
   up to ~10% between contexts at 1x1 on an H100, more than the tactics change); the
   median over rounds is reported. Logits of each level are compared with the first.

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
    parser.add_argument("--build-shape", default="8x2048",
                        help="input shape the level-3 tactics are timed at (the prefill shape "
                             "by default, as examples/20's bench.py)")
    parser.add_argument("--levels", default="0,1,2,3")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3,
                        help="round-robin rounds over the levels (median reported)")
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
        t0 = time.perf_counter()
        Builder(BuilderConfig(device="cuda", precision="fp16", optimization_level=3)).build(
            net, input_shapes=build_shapes)
        first = time.perf_counter() - t0
        print(f"level-3 build, no cache file, kernels compiled as needed: {first:.2f} s",
              flush=True)
        gc.collect()
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
        report["cache"] = {"first_build_s": first, "cold_s": times[0], "warm_s": times[1],
                           "speedup": times[0] / times[1], "tactics": len(chosen),
                           "cache_bytes": os.path.getsize(cache)}
        print(f"timing cache (kernels already compiled): cold {times[0]:.2f} s / warm "
              f"{times[1]:.2f} s = {times[0] / times[1]:.1f}x (target >= 3x; warm < 20 s); "
              f"first build on this machine {first:.2f} s = {first / times[1]:.1f}x the warm "
              f"one", flush=True)

        engines = {}
        for level in levels:
            t0 = time.perf_counter()
            config = BuilderConfig(device="cuda", precision="fp16", optimization_level=level,
                                   timing_cache=cache if level == 3 else None)
            engines[level] = Builder(config).build(net, input_shapes=build_shapes)
            report["levels"][str(level)] = {"build_s": time.perf_counter() - t0,
                                            "layers": len(engines[level].network.layers),
                                            "shapes": {}}
            print(f"level {level}: built in {report['levels'][str(level)]['build_s']:.1f} s, "
                  f"{len(engines[level].network.layers)} layers", flush=True)
        for batch, seq in shapes:
            shape = f"{batch}x{seq}"
            ids = cupy.asarray(sample_inputs(cfg, batch, seq, seed=3)["input_ids"])
            runs: dict[int, list[float]] = collections.defaultdict(list)
            ref = None
            for rnd in range(args.rounds):
                for level, engine in engines.items():
                    ctx = engine.create_execution_context()
                    try:
                        logits = ctx.execute({"input_ids": ids})["logits"]
                        if rnd == 0:
                            logits = logits.astype(np.float32)
                            ref = logits if ref is None else ref
                            report["levels"][str(level)]["shapes"][shape] = {
                                "max_diff_vs_first": float(np.abs(logits - ref).max())}
                        runs[level].append(median_ms(
                            lambda ids=ids, ctx=ctx: ctx.execute({"input_ids": ids},
                                                                 copy_outputs=False),
                            args.iters, 3, cupy.cuda.Event, cupy.cuda.Device().synchronize))
                    except Exception as exc:  # noqa: BLE001 - report and go on
                        print(f"  level {level} {shape} failed: {type(exc).__name__}: {exc}")
                        runs[level].append(float("nan"))
                    finally:
                        ctx.close()
                    del ctx
                    gc.collect()
                    cupy.get_default_memory_pool().free_all_blocks()
            for level in engines:
                row = report["levels"][str(level)]["shapes"].setdefault(shape, {})
                row["ms"] = float(np.median(runs[level]))
                row["rounds_ms"] = runs[level]
                print(f"  level {level} {shape}: {row['ms']:.3f} ms (rounds "
                      f"{', '.join(f'{v:.3f}' for v in runs[level])}), max|diff| vs level "
                      f"{levels[0]} {row.get('max_diff_vs_first', float('nan')):.4f}",
                      flush=True)

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

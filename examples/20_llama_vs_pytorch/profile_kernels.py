"""Where a dist_rt step spends its GPU time: per-kernel totals from CUPTI (torch.profiler).

Builds the same ~1B Llama as ``bench.py`` (or ``--small``), runs ``--iters`` steps per
shape under ``torch.profiler`` (which records every kernel of the process through CUPTI,
CuPy's and cuBLAS's included) and prints, per shape and mode (CUDA graph replay / eager):
the wall time per step, the summed kernel time per step, the kernel count per step, and the
top kernels by time. ``wall - kernels`` is what launches, gaps and host work cost; a decode
step whose kernels sum to the weight-read bound but whose wall time does not is
launch-bound, not bandwidth-bound.

It also prints the activation memory: the graph pool after capture next to the memory
plan's lower bound (the largest sum of live tensor bytes at any step) for the same shapes.

Usage: ``python examples/20_llama_vs_pytorch/profile_kernels.py [--small] [--shapes 1x1,8x2048]``
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from bench import model_config  # noqa: E402 - example 20's model


def kernel_table(prof, iters: int) -> tuple[float, int, list[tuple[str, int, float]]]:
    """(kernel µs per step, kernels per step, [(name, count, µs)] by time) from a profile."""
    import torch  # noqa: PLC0415

    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for evt in prof.events():
        if evt.device_type != torch.autograd.DeviceType.CUDA:
            continue
        entry = totals[evt.name]
        entry[0] += 1
        entry[1] += evt.time_range.elapsed_us()
    rows = sorted(((n, int(c), us) for n, (c, us) in totals.items()), key=lambda r: -r[2])
    total_us = sum(r[2] for r in rows) / iters
    count = sum(r[1] for r in rows) // iters
    return total_us, count, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--shapes", default="1x1,1x128,8x2048")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--top", type=int, default=14)
    parser.add_argument("--level", type=int, default=2, help="optimization level")
    args = parser.parse_args()

    import cupy
    import onnx
    import torch
    from torch.profiler import ProfilerActivity, profile

    import dist_rt
    from dist_rt import Builder, BuilderConfig
    from dist_rt.builder.passes import BuildState, memory_plan
    from dist_rt.models.llama import make_llama, sample_inputs
    from dist_rt.runtime.backends.cuda import graph_pool_bytes

    cfg = model_config(args.small)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    print(f"device: {torch.cuda.get_device_name()}; {cfg}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama.onnx")
        onnx.save_model(make_llama(cfg, external_data_dir=tmp), path)
        net = dist_rt.parse_onnx(path)
        engine = Builder(BuilderConfig(device="cuda", precision="fp16",
                                       optimization_level=args.level)).build(net)
        print(f"built: {len(engine.network.layers)} layers, "
              f"{engine.weight_bytes / 2**30:.3f} GiB weights")
        for batch, seq in shapes:
            ids = cupy.asarray(sample_inputs(cfg, batch, seq, seed=1)["input_ids"])
            feeds = {"input_ids": ids}
            state = BuildState(BuilderConfig(device="cuda"),
                               input_shapes={"input_ids": (batch, seq)})
            plan = memory_plan.plan(engine.network,
                                    memory_plan.concrete_shapes(engine.network, state))
            for graph in (True, False):
                ctx = engine.create_execution_context()
                ctx.use_cuda_graph = graph
                for _ in range(3):
                    ctx.execute(feeds, copy_outputs=False)
                cupy.cuda.Device().synchronize()
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                walls = []
                for _ in range(10):
                    start.record()
                    ctx.execute(feeds, copy_outputs=False)
                    end.record()
                    end.synchronize()
                    walls.append(cupy.cuda.get_elapsed_time(start, end))
                wall = float(np.median(walls))
                pool = graph_pool_bytes(ctx) if graph else 0
                runner = getattr(ctx, "_cuda_graph_runner", None)
                arena = max(runner.arena_bytes.values(), default=0) if graph and runner else 0
                notes = [e.arena_note for e in runner.graphs.values()
                         if e.arena_note] if graph and runner else []
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(args.iters):
                        ctx.execute(feeds, copy_outputs=False)
                    cupy.cuda.Device().synchronize()
                ctx.close()
                us, count, rows = kernel_table(prof, args.iters)
                mode = "graph" if graph else "eager"
                print(f"\n== {batch}x{seq} {mode}: wall {wall:.3f} ms/step, kernels "
                      f"{us / 1e3:.3f} ms/step, {count} kernels/step"
                      + (f"; graph pool {pool / 2**20:.1f} MiB, arena {arena / 2**20:.1f} "
                         f"MiB ({arena / max(plan['lower_bound_bytes'], 1):.2f}x the bound)"
                         f"{' ' + '; '.join(notes) if notes else ''}, plan lower bound "
                         f"{plan['lower_bound_bytes'] / 2**20:.1f} MiB, planned arena "
                         f"{plan['arena_bytes'] / 2**20:.1f} MiB" if graph else ""))
                for name, c, t in rows[:args.top]:
                    print(f"  {t / args.iters:9.1f} us  {c // args.iters:4d}x  {name[:110]}")
                time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Weight-only int8 GEMMs vs fp16 GEMMs at decode shapes, and a quantized Llama, one GPU.

Part 1, the GEMMs (M rows of fp16 activations times a (K, N) weight), for M in (1, 16) and
(K, N) in (2048, 5632), (5632, 2048), (4096, 14336), (14336, 4096):

* ``fp16 cuBLAS``: ``cublas.matmul2d`` on an fp16 weight;
* ``fp16 engine``: what an fp16 engine's MatMul runs (``kernels.matmul``: a GEMV kernel for
  small M where one is registered, else the same cuBLAS call);
* ``int8 w8``: ``w8.matmul``, the WeightOnlyMatMul kernel on an int8 weight + fp32 scales.

Each sample times, with CUDA events, one replay of a CUDA graph holding ``--burst`` calls
back to back (so neither Python nor launch latency is measured, as in an engine running with
CUDA graphs); the calls cycle through enough weight copies (>= 128 MiB) that the weights do
not stay in L2. Per call: median over ``--iters`` samples after ``--warmup`` replays.
GB/s is weight bytes / time (fp16: 2KN bytes, int8: KN + 4N).

Part 2, a whole model: the zoo Llama (hidden 2048, 4 layers, 16 heads / 4 kv heads, MLP
5632, fp16) and the same model with every MatMul weight int8 per column in QDQ form
(``dist_rt.models.quantize``), both built with ``BuilderConfig(device="cuda",
precision="fp16")``; one 1x1 decode step timed each way (CUDA graphs on), and the max
|logit difference|.

``--small`` runs small shapes; without a GPU (no CuPy or no device) it runs a CPU smoke
test of part 2 (``device="cpu"``, where the fusion is off) and exits 0. Without a GPU and
without ``--small`` it says so and exits 2.

Usage: ``python examples/50_quantized/bench_weight_only.py [--small] [--iters 200]
[--warmup 20] [--burst 20] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SHAPES = [(2048, 5632), (5632, 2048), (4096, 14336), (14336, 4096)]
SMALL_SHAPES = [(256, 512), (512, 256)]
ROWS = (1, 16)
#: Weight copies cycled through per variant: at least this many bytes, so L2 cannot hold them.
L2_FLUSH_BYTES = 128 << 20


def cuda_available() -> tuple[bool, str]:
    """(True, device name) when CuPy sees a GPU, else (False, why not)."""
    try:
        import cupy  # noqa: PLC0415 - optional: the CPU smoke run has no CuPy
    except ImportError as exc:
        return False, f"CuPy is not installed ({exc})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "no CUDA device"
        props = cupy.cuda.runtime.getDeviceProperties(0)
    except Exception as exc:  # noqa: BLE001 - any CUDA failure means "no usable GPU"
        return False, f"CUDA is not usable ({type(exc).__name__}: {exc})"
    name = props["name"]
    return True, name.decode() if isinstance(name, bytes) else str(name)


def graph_us(cupy, calls, iters: int, warmup: int) -> float:
    """Median µs per call of ``calls`` (a list of thunks) replayed as one CUDA graph."""
    stream = cupy.cuda.Stream(non_blocking=True)
    pool = cupy.cuda.MemoryPool()
    relaxed = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", 2)
    with cupy.cuda.using_allocator(pool.malloc), stream:
        for call in calls:  # eager once: compiles kernels, creates the cuBLAS handle
            call()
        stream.synchronize()
        stream.begin_capture(relaxed)
        for call in calls:
            call()
        graph = stream.end_capture()
        for _ in range(warmup):
            graph.launch(stream)
        stream.synchronize()
        times = []
        for _ in range(iters):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record(stream)
            graph.launch(stream)
            end.record(stream)
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end) * 1e3 / len(calls))
    del graph
    pool.free_all_blocks()
    return float(np.median(times))


def gemm_rows(cupy, shapes, iters: int, warmup: int, burst: int) -> list[dict]:
    """Part 1: one row per (M, K, N)."""
    from dist_rt.models.quantize import quantize_weights  # noqa: PLC0415
    from dist_rt.runtime.cuda import cublas, kernels, w8  # noqa: PLC0415

    rows = []
    rng = np.random.default_rng(0)
    for k, n in shapes:
        w = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32)
        q, scale = quantize_weights(w)
        copies16 = max(1, min(burst, -(-L2_FLUSH_BYTES // (2 * k * n))))
        copies8 = max(1, min(burst, -(-L2_FLUSH_BYTES // (k * n))))
        w16 = [cupy.asarray((q * scale).astype(np.float16)) for _ in range(copies16)]
        wq = [cupy.asarray(q) for _ in range(copies8)]
        sc = cupy.asarray(scale)
        for m in ROWS:
            a = cupy.asarray(rng.standard_normal((m, k)).astype(np.float16))
            want = cupy.asnumpy(cublas.matmul2d(a, w16[0])).astype(np.float32)
            got = cupy.asnumpy(w8.matmul(a, wq[0], sc)).astype(np.float32)
            variants = {
                "cublas": [partial(cublas.matmul2d, a, w16[i % copies16]) for i in range(burst)],
                "engine": [partial(kernels.matmul, None, [a, w16[i % copies16]], None)
                           for i in range(burst)],
                "w8": [partial(w8.matmul, a, wq[i % copies8], sc) for i in range(burst)],
            }
            row = {"m": m, "k": k, "n": n,
                   "max_abs_diff": float(np.max(np.abs(got - want))),
                   "max_abs_ref": float(np.max(np.abs(want)))}
            for name, calls in variants.items():
                try:
                    row[f"{name}_us"] = graph_us(cupy, calls, iters, warmup)
                except Exception as exc:  # noqa: BLE001 - report and keep benchmarking
                    print(f"  {name} M={m} K={k} N={n} failed: {type(exc).__name__}: {exc}")
                    row[f"{name}_us"] = float("nan")
            bytes16, bytes8 = 2 * k * n, k * n + 4 * n
            row["cublas_gbs"] = bytes16 / row["cublas_us"] / 1e3
            row["engine_gbs"] = bytes16 / row["engine_us"] / 1e3
            row["w8_gbs"] = bytes8 / row["w8_us"] / 1e3
            row["speedup_vs_cublas"] = row["cublas_us"] / row["w8_us"]
            row["speedup_vs_engine"] = row["engine_us"] / row["w8_us"]
            rows.append(row)
            print(f"  M={m} K={k} N={n}: cuBLAS {row['cublas_us']:.1f} us, engine "
                  f"{row['engine_us']:.1f} us, w8 {row['w8_us']:.1f} us "
                  f"({row['w8_gbs']:.0f} GB/s)", flush=True)
        del w16, wq, variants
        cupy.get_default_memory_pool().free_all_blocks()
    return rows


def llama_config(small: bool):
    """The model of part 2 (``--small``: a tiny one)."""
    from dist_rt.models.llama import LlamaConfig  # noqa: PLC0415

    if small:
        return LlamaConfig(hidden=256, layers=2, heads=4, kv_heads=2, mlp=512, dtype="float16")
    return LlamaConfig(hidden=2048, layers=4, heads=16, kv_heads=4, mlp=5632, dtype="float16")


def model_row(device: str, small: bool, iters: int, warmup: int) -> dict:
    """Part 2: build the fp16 and the int8-weight Llama, time a 1x1 step, compare logits."""
    import dist_rt  # noqa: PLC0415
    from dist_rt import Builder, BuilderConfig  # noqa: PLC0415
    from dist_rt.models.llama import make_llama, sample_inputs  # noqa: PLC0415
    from dist_rt.models.quantize import quantize_matmul_weights  # noqa: PLC0415

    cfg = llama_config(small)
    model = make_llama(cfg)
    nets = {"fp16": dist_rt.parse_onnx(model),
            "int8": dist_rt.parse_onnx(quantize_matmul_weights(model))}
    del model
    ids = sample_inputs(cfg, 1, 1, seed=3)["input_ids"]
    row: dict = {"model": f"llama hidden={cfg.hidden} layers={cfg.layers} mlp={cfg.mlp}",
                 "device": device}
    logits = {}
    for name, net in nets.items():
        t0 = time.perf_counter()
        engine = Builder(BuilderConfig(device=device, precision="fp16")).build(net)
        row[f"{name}_build_s"] = time.perf_counter() - t0
        row[f"{name}_weight_bytes"] = int(engine.weight_bytes)
        row[f"{name}_w8_layers"] = sum(lay.op_type == "WeightOnlyMatMul"
                                       for lay in engine.network.layers)
        with engine.create_execution_context() as ctx:
            logits[name] = ctx.execute({"input_ids": ids})["logits"]
            row[f"{name}_ms"] = step_ms(ctx, ids, device, iters, warmup)
        print(f"  {name}: {row[f'{name}_ms']:.3f} ms per 1x1 step, "
              f"{row[f'{name}_weight_bytes'] / 2**20:.1f} MiB weights, "
              f"{row[f'{name}_w8_layers']} WeightOnlyMatMul layers", flush=True)
    row["max_abs_logit_diff"] = float(np.max(np.abs(logits["int8"] - logits["fp16"])))
    row["max_abs_logit"] = float(np.max(np.abs(logits["fp16"])))
    row["speedup"] = row["fp16_ms"] / row["int8_ms"]
    return row


def step_ms(ctx, ids: np.ndarray, device: str, iters: int, warmup: int) -> float:
    """Median ms of one ``execute`` (CUDA events on the GPU, wall clock on the CPU)."""
    if device == "cpu":
        for _ in range(min(warmup, 2)):
            ctx.execute({"input_ids": ids})
        times = []
        for _ in range(min(iters, 5)):
            t0 = time.perf_counter()
            ctx.execute({"input_ids": ids})
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times))
    import cupy  # noqa: PLC0415

    dev_ids = cupy.asarray(ids)

    def run():
        return ctx.execute({"input_ids": dev_ids}, copy_outputs=False)

    for _ in range(warmup):
        run()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(iters):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return float(np.median(times))


def print_tables(gemms: list[dict], model: dict) -> None:
    """The markdown tables of both parts."""
    if gemms:
        print("\n| M | K | N | fp16 cuBLAS us | fp16 engine us | int8 w8 us | cuBLAS GB/s | "
              "engine GB/s | w8 GB/s | w8 vs cuBLAS | w8 vs engine | max abs diff |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in gemms:
            print(f"| {r['m']} | {r['k']} | {r['n']} | {r['cublas_us']:.1f} | "
                  f"{r['engine_us']:.1f} | {r['w8_us']:.1f} | {r['cublas_gbs']:.0f} | "
                  f"{r['engine_gbs']:.0f} | {r['w8_gbs']:.0f} | "
                  f"{r['speedup_vs_cublas']:.2f}x | {r['speedup_vs_engine']:.2f}x | "
                  f"{r['max_abs_diff']:.3g} |")
    print(f"\n| model ({model['device']}) | fp16 ms | int8 weights ms | speed-up | "
          f"weights MiB fp16 / int8 | max abs logit diff (max abs logit) |")
    print("|---|---|---|---|---|---|")
    print(f"| {model['model']} 1x1 | {model['fp16_ms']:.3f} | {model['int8_ms']:.3f} | "
          f"{model['speedup']:.2f}x | {model['fp16_weight_bytes'] / 2**20:.1f} / "
          f"{model['int8_weight_bytes'] / 2**20:.1f} | {model['max_abs_logit_diff']:.4f} "
          f"({model['max_abs_logit']:.2f}) |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small shapes (CPU smoke w/o GPU)")
    parser.add_argument("--iters", type=int, default=200, help="timed samples (median)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed warm-up runs")
    parser.add_argument("--burst", type=int, default=20, help="GEMM calls per timed graph")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    ok, device_name = cuda_available()
    if not ok:
        if not args.small:
            print(f"CUDA is not available: {device_name}. This benchmark needs a GPU; "
                  f"--small runs a CPU smoke test instead.")
            return 2
        print(f"CUDA is not available ({device_name}): CPU smoke run of the model part only "
              f"(device='cpu', where the int8 fusion is off).")
    device = "cuda" if ok else "cpu"
    results: dict = {"device": device_name if ok else "cpu", "small": args.small,
                     "iters": args.iters, "warmup": args.warmup, "burst": args.burst}
    gemms = []
    if ok:
        import cupy  # noqa: PLC0415

        print(f"device: {device_name}, cupy {cupy.__version__}")
        gemms = gemm_rows(cupy, SMALL_SHAPES if args.small else SHAPES, args.iters,
                          args.warmup, args.burst)
    model = model_row(device, args.small, args.iters, args.warmup)
    results.update(gemms=gemms, model=model)
    print_tables(gemms, model)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Causal attention alone: dist_rt's kernels vs torch scaled_dot_product_attention, fp16.

For each (B, Hq, Hkv, S, D) this times, with CUDA events (warm-up, median of ``--iters``):

* ``tc``: the tensor-core flash kernel (``dist_rt/runtime/cuda/flash.py``), 16 query rows a
  warp (64 a CTA);
* ``tc2``: its variant with 32 rows a warp (two m16 tiles, 128 rows a CTA, Q re-read from
  shared memory);
* ``chunks``: cuBLAS Q K^T per query chunk -> in-place softmax -> cuBLAS P V;
* ``cublas``: the same per batch item over all queries (scores of one item in memory);
* ``torch``: ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``, with
  ``enable_gqa=True`` where the backend takes it, else K/V repeated to Hq heads beforehand
  (outside the timing). The first backend that runs, in the order flash, cuDNN, efficient,
  math, is used and reported.

Inputs are contiguous (B, H, S, D) torch tensors shared with CuPy through DLPack (no copy);
dist_rt's paths write (B, S, Hq, D) buffers, as the engine uses them. TFLOP/s counts the
causal half: ``2 * 2 * B * Hq * S * Skv * D / 2``. ``max_abs_diff`` is each path's largest
difference from torch's output.

Usage: ``python examples/20_llama_vs_pytorch/bench_attention.py [--iters 50] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

#: (B, Hq, Hkv, S, D): the ~1B Llama at 8x2048, a 32-head prefill and its 4-way
#: tensor-parallel slice, and a shorter batch.
SHAPES = [(8, 16, 4, 2048, 128), (1, 32, 8, 2048, 128), (1, 8, 2, 2048, 128),
          (4, 16, 4, 512, 128)]
PATHS = ("tc", "tc2", "chunks", "cublas")


class _Layer:
    """The attributes kernels.attention reads from a dist_rt::Attention layer."""

    def __init__(self, heads: int, kv_heads: int):
        self.attributes = {"causal": 1, "num_heads": heads, "kv_num_heads": kv_heads,
                           "output_layout": "bshd"}

    def attr(self, name, default=None):
        return self.attributes.get(name, default)


def median_ms(fn, iters: int, warmup: int, torch) -> float:
    """Median of ``iters`` timings with torch CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def torch_sdpa(torch, q, k, v):
    """(name, fn) of the first SDPA backend that runs this call, GQA native or repeated."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    g = q.shape[1] // k.shape[1]
    kr, vr = (x.repeat_interleave(g, dim=1).contiguous() for x in (k, v))
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                    SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        for gqa in (True, False):
            def run(backend=backend, gqa=gqa):
                with sdpa_kernel(backend):
                    if gqa:
                        return sdpa(q, k, v, is_causal=True, enable_gqa=True)
                    return sdpa(q, kr, vr, is_causal=True)
            try:
                run()
                torch.cuda.synchronize()
            except (RuntimeError, NotImplementedError):  # backend refuses the call
                continue
            return f"{backend.name.lower()}{'' if gqa else ' (kv repeated)'}", run
    raise RuntimeError("no SDPA backend ran")


def bench_shape(shape, iters: int, warmup: int, cupy, torch) -> dict:
    from dist_rt.runtime.cuda import kernels

    b, hq, hkv, s, d = shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn((b, hq, s, d), device="cuda", dtype=torch.float16, generator=gen)
    k, v = (torch.randn((b, hkv, s, d), device="cuda", dtype=torch.float16, generator=gen)
            for _ in range(2))
    cq, ck, cv = (cupy.from_dlpack(x) for x in (q, k, v))
    layer = _Layer(hq, hkv)
    flops = 2 * 2 * b * hq * s * s * d / 2
    name, ref_fn = torch_sdpa(torch, q, k, v)
    ref = ref_fn().float()
    row = {"shape": dict(zip(("B", "Hq", "Hkv", "S", "D"), shape, strict=True)),
           "torch_backend": name, "ms": {}, "tflops": {}, "max_abs_diff": {}}
    for path in PATHS:
        def run(path=path):
            return kernels.attention(layer, [cq, ck, cv], None, path=path)[0]
        try:
            y = torch.from_dlpack(run()).float().transpose(1, 2)  # (B, S, H, D) -> bhsd
            row["max_abs_diff"][path] = float((y - ref).abs().max())
            row["ms"][path] = median_ms(run, iters, warmup, torch)
        except Exception as exc:  # noqa: BLE001 - report the failure, time the rest
            print(f"  {path}: failed: {type(exc).__name__}: {exc}")
            row["ms"][path] = math.nan
    row["ms"]["torch"] = median_ms(ref_fn, iters, warmup, torch)
    row["max_abs_diff"]["torch"] = 0.0
    row["tflops"] = {p: flops / (ms * 1e-3) / 1e12 for p, ms in row["ms"].items()}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    import cupy
    import torch

    # One stream for both libraries, so the events time exactly the kernels launched.
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
    stream.use()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"cupy {cupy.__version__}")
    rows = []
    header = f"{'B,Hq,Hkv,S,D':>20} " + " ".join(f"{p:>15}" for p in (*PATHS, "torch"))
    print("ms (TFLOP/s):\n" + header)
    for shape in SHAPES:
        row = bench_shape(shape, args.iters, args.warmup, cupy, torch)
        rows.append(row)
        cells = " ".join(f"{row['ms'][p]:7.3f} ({row['tflops'][p]:5.1f})"
                         for p in (*PATHS, "torch"))
        diffs = ", ".join(f"{p} {row['max_abs_diff'].get(p, math.nan):.4f}" for p in PATHS)
        print(f"{','.join(map(str, shape)):>20} {cells}\n{'':>20} torch: "
              f"{row['torch_backend']}; max abs diff vs torch: {diffs}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "cupy": cupy.__version__, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PyTorch ``torch.distributed`` (NCCL) reference timings, measured like collectives.bench.

Run one process per GPU (``mpirun -n 4 python torch_bench.py --json torch.json``); rank and
device come from ``launch.discover()``. For each op and size it times ``--iters`` back-to-back
calls between CUDA events after ``--warmup`` (eagerly, and replayed from a CUDA graph), takes
the slowest rank, and reports nccl-tests bus bandwidth, exactly as ``collectives.bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from launch import discover  # noqa: E402 - repo root on the path first

FACTOR = {"all_reduce": lambda n: 2 * (n - 1) / n}


def make_call(name: str, size: int, n: int):
    """Tensors and a zero-argument call for one op on an S-byte fp32 message."""
    count = size // 4
    if name != "all_reduce":
        count = count // n * n
    dev = torch.device("cuda", torch.cuda.current_device())
    if name == "all_reduce":
        x = torch.randn(count, device=dev)
        return count, lambda: dist.all_reduce(x)
    if name == "all_gather":
        x, out = torch.randn(count // n, device=dev), torch.empty(count, device=dev)
        return count, lambda: dist.all_gather_into_tensor(out, x)
    if name == "reduce_scatter":
        x, out = torch.randn(count, device=dev), torch.empty(count // n, device=dev)
        return count, lambda: dist.reduce_scatter_tensor(out, x)
    x, out = torch.randn(count, device=dev), torch.empty(count, device=dev)
    return count, lambda: dist.all_to_all_single(out, x)


def time_call(call, iters: int, warmup: int, graph: bool) -> float:
    """Mean seconds per call, slowest rank."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            call()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(iters):
                call()
        g.replay()
    torch.cuda.synchronize()
    dist.barrier()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    if graph:
        g.replay()
    else:
        for _ in range(iters):
            call()
    end.record()
    end.synchronize()
    t = torch.tensor([start.elapsed_time(end) / 1e3 / iters], device="cuda")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def main() -> int:
    """Measure the ops and sizes asked for; rank 0 writes the JSON records."""
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="8,1048576,268435456")
    p.add_argument("--ops", default="all_reduce,all_gather,reduce_scatter,all_to_all")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    info = discover()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
    dist.init_process_group("nccl", rank=info.rank, world_size=info.world_size,
                            device_id=torch.device("cuda", torch.cuda.current_device()))
    n, records = info.world_size, []
    for name in args.ops.split(","):
        for size in map(int, args.sizes.split(",")):
            count, call = make_call(name, size, n)
            if count == 0:
                continue
            for graph in (False, True):
                if graph and size > (64 << 20):
                    continue  # graphs matter for launch overhead, i.e. small messages
                secs = time_call(call, args.iters, args.warmup, graph)
                algbw = count * 4 / secs / 1e9
                records.append({"op": name, "size": count * 4, "graph": graph,
                                "time_us": secs * 1e6, "algbw_GBps": algbw,
                                "busbw_GBps": algbw * FACTOR.get(name, lambda k: (k - 1) / k)(n)})
                if info.rank == 0:
                    print(f"torch {name:<14} {count * 4:>11} graph={graph!s:<5} "
                          f"{secs * 1e6:>10.2f} us {records[-1]['busbw_GBps']:>8.2f} GB/s",
                          flush=True)
    if info.rank == 0:
        with open(args.json, "w") as f:
            json.dump({"ranks": n, "torch": torch.__version__,
                       "nccl": ".".join(map(str, torch.cuda.nccl.version())),
                       "records": records}, f, indent=1)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

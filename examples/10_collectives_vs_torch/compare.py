"""Print ours-vs-torch tables from collectives.bench and torch_bench.py JSON files.

    python compare.py OURS_EAGER.json OURS_GRAPH.json TORCH.json [--size 268435456]
"""

from __future__ import annotations

import argparse
import json
import sys


def pick(records, op, size, graph=None):
    """The record for (op, size[, graph]) or None."""
    for r in records:
        if r["op"] == op and r["size"] == size and (graph is None or r.get("graph") == graph):
            return r
    return None


def main() -> int:
    """Print busbw at ``--size`` per op and the 8-byte all-reduce latency, ours vs torch."""
    p = argparse.ArgumentParser()
    p.add_argument("ours")
    p.add_argument("ours_graph")
    p.add_argument("torch")
    p.add_argument("--size", type=int, default=256 << 20)
    a = p.parse_args()
    ours = json.load(open(a.ours))["records"]
    ours_g = json.load(open(a.ours_graph))["records"]
    torch_doc = json.load(open(a.torch))
    ref = torch_doc["records"]
    print(f"busbw at {a.size} B, {torch_doc['ranks']} GPUs (torch {torch_doc['torch']}, "
          f"NCCL {torch_doc['nccl']})")
    print("| op | ours GB/s | torch GB/s | ours/torch |\n|---|---|---|---|")
    for op in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
        o, t = pick(ours, op, a.size), pick(ref, op, a.size, False)
        if o and t:
            print(f"| {op} | {o['busbw_GBps']:.1f} | {t['busbw_GBps']:.1f} | "
                  f"{o['busbw_GBps'] / t['busbw_GBps']:.3f} |")
    print("\n8-byte all_reduce latency (us)")
    print("| mode | ours | torch | ours - torch |\n|---|---|---|---|")
    for mode, recs, graph in (("eager", ours, False), ("cuda graph", ours_g, True)):
        o, t = pick(recs, "all_reduce", 8), pick(ref, "all_reduce", 8, graph)
        if o and t:
            print(f"| {mode} | {o['time_us']:.2f} | {t['time_us']:.2f} | "
                  f"{o['time_us'] - t['time_us']:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

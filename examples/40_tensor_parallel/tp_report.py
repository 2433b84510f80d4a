"""The report of ``bench_tp.py``: result rows, issue 10's targets, tables, plot, JSON.

Rank 0 gathers each pass's per-rank timings into rows (:func:`collect`: the slowest rank's
median), adds speed-up and efficiency over N = 1 (:func:`summarize`), evaluates the targets
(:func:`targets`), prints markdown tables (:func:`print_report`) and draws latency vs N
(:func:`plot`). No MPI, CUDA or torch here: the report is plain data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

#: Issue 10's targets (README.md).
DECODE_N2, DECODE_N4, PREFILL_N4_THROUGHPUT = 0.6, 0.35, 3.2


def check(ours: np.ndarray, ref: np.ndarray, tol: float) -> dict[str, Any]:
    """Max abs difference of two logits arrays and whether it is within the fp16 tolerance."""
    diff = float(np.max(np.abs(ours.astype(np.float32) - ref.astype(np.float32))))
    scale = float(np.max(np.abs(ref)))
    return {"max_abs_diff": diff, "max_abs_ref": scale, "tol": tol * max(1.0, scale),
            "ok": bool(diff <= tol * max(1.0, scale))}


# -- rows and targets ------------------------------------------------------------------------------

def summarize(results: list[dict[str, Any]]) -> None:
    """Add speed-up over N = 1 and efficiency (speed-up / N) to each row, in place."""
    base = {(r["impl"], r["shape"]): r["median_ms"] for r in results if r["n"] == 1}
    for r in results:
        one = base.get((r["impl"], r["shape"]))
        r["speedup"] = one / r["median_ms"] if one else None
        r["efficiency"] = r["speedup"] / r["n"] if one else None
        r["latency_vs_n1"] = r["median_ms"] / one if one else None


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate issue 10's targets on whatever rows exist (``ok`` None: not measured)."""
    by = {(r["impl"], r["n"], r["shape"]): r for r in results}
    shapes = sorted({r["shape"] for r in results}, key=lambda s: tuple(map(int, s.split("x"))))
    out = []
    for shape in shapes:
        decode = shape.endswith("x1")
        measured = {r["n"] for r in results}
        for n, limit in ((2, DECODE_N2), (4, DECODE_N4)):
            r = by.get(("dist_rt", n, shape))
            if decode and n in measured:
                value = r["latency_vs_n1"] if r else None
                out.append({"target": f"decode {shape}: latency N={n} / N=1 <= {limit}",
                            "value": value, "ok": None if value is None else value <= limit})
        if not decode and 4 in measured:
            r = by.get(("dist_rt", 4, shape))
            value = r["speedup"] if r else None
            out.append({"target": f"prefill {shape}: throughput N=4 / N=1 >= "
                                  f"{PREFILL_N4_THROUGHPUT}",
                        "value": value,
                        "ok": None if value is None else value >= PREFILL_N4_THROUGHPUT})
        for n in sorted({r["n"] for r in results}):
            ours = by.get(("dist_rt", n, shape))
            theirs = [by[k]["median_ms"] for k in (("torch_eager", n, shape),
                                                   ("torch_compile", n, shape)) if k in by]
            value = ours["median_ms"] / min(theirs) if ours and theirs else None
            out.append({"target": f"{shape} N={n}: dist_rt / best torch TP < 1",
                        "value": value, "ok": None if value is None else value < 1.0})
    return out


def print_report(report: dict[str, Any]) -> None:
    """Markdown tables on stdout."""
    print("\n| impl | N | shape | median ms | tokens/s | speed-up | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for r in report["results"]:
        su = "-" if r["speedup"] is None else f"{r['speedup']:.2f}"
        ef = "-" if r["efficiency"] is None else f"{r['efficiency']:.2f}"
        print(f"| {r['impl']} | {r['n']} | {r['shape']} | {r['median_ms']:.3f} | "
              f"{r['tokens_per_s']:.0f} | {su} | {ef} |")
    print("\n| check | max abs diff | allowed | ok |\n|---|---|---|---|")
    for c in report["checks"]:
        print(f"| {c['what']} | {c['max_abs_diff']:.4g} | {c['tol']:.4g} | {c['ok']} |")
    print("\n| target | value | met |\n|---|---|---|")
    for t in report["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        print(f"| {t['target']} | {value} | {t['ok']} |")
    for note in report["notes"]:
        print(f"note: {note}")
    sys.stdout.flush()


def plot(report: dict[str, Any], path: str) -> str:
    """Latency vs N, one panel per shape; returns a note saying what happened."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return "plot skipped: matplotlib is not importable (pip install matplotlib)"
    shapes = list(dict.fromkeys(r["shape"] for r in report["results"]))
    if not shapes:
        return "plot skipped: no results"
    fig, axes = plt.subplots(1, len(shapes), figsize=(4.5 * len(shapes), 3.8), squeeze=False)
    for ax, shape in zip(axes[0], shapes, strict=True):
        rows = [r for r in report["results"] if r["shape"] == shape]
        for impl in dict.fromkeys(r["impl"] for r in rows):
            pts = sorted((r["n"], r["median_ms"]) for r in rows if r["impl"] == impl)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        one = [r["median_ms"] for r in rows if r["impl"] == "dist_rt" and r["n"] == 1]
        ns = sorted({r["n"] for r in rows})
        if one:
            ax.plot(ns, [one[0] / k for k in ns], "k:", label="dist_rt ideal")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(k) for k in ns])
        ax.set_yscale("log")
        ax.set_title(f"batch x seq {shape}")
        ax.set_xlabel("N (GPUs)")
        ax.set_ylabel("median latency, ms")
        ax.legend(fontsize=8)
    fig.suptitle(report["title"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot written to {path}"


def collect(report: dict[str, Any], impl: str, n: int, gathered: list[Any],
             args: argparse.Namespace) -> None:
    """Add one result row per shape: the slowest rank's median over ranks ``0..n-1``."""
    per_rank = [g for g in gathered[:n] if g]
    if not per_rank:
        return
    for i, (b, s) in enumerate(args.shape_list):
        medians = [float(np.median(g[i]["times_ms"])) for g in per_rank if i < len(g)]
        if not medians:
            continue
        times = per_rank[0][i]["times_ms"]
        med = max(medians)
        report["results"].append({
            "impl": impl, "n": n, "shape": f"{b}x{s}", "batch": b, "seq": s,
            "median_ms": med, "rank_medians_ms": medians, "min_ms": float(np.min(times)),
            "p90_ms": float(np.percentile(times, 90)), "iters": len(times),
            "tokens_per_s": b * s / (med * 1e-3),
            **({"first_call_s": per_rank[0][i]["first_call_s"]}
               if "first_call_s" in per_rank[0][i] else {})})
    summarize(report["results"])


def write_json(report: dict[str, Any], path: str) -> None:
    """Write the report atomically (a run cut short still leaves the last complete JSON)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)

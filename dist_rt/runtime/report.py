"""The trtexec-style performance report of ``python -m dist_rt.run``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def format_bytes(n: int) -> str:
    """``1.50 MiB`` style text for a byte count."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """min/mean/median/p90/p99/max of per-iteration latencies, in milliseconds."""
    ms = np.asarray(seconds, np.float64) * 1e3
    if ms.size == 0:
        return {k: 0.0 for k in ("min", "mean", "median", "p90", "p99", "max")}
    return {"min": float(ms.min()), "mean": float(ms.mean()),
            "median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def build_report(*, model: str, world_size: int, device: str, precision: str,
                 latencies: Sequence[float], wall_seconds: float, compute_seconds: float,
                 collective_seconds: float | None, memory: list[dict[str, Any]],
                 errors: dict[str, float] | None = None) -> dict[str, Any]:
    """The report as a JSON-able dict (the ``--json`` file holds exactly this).

    Args:
        model: Model name or path.
        world_size: Number of ranks.
        device: Device the engines ran on.
        precision: Build precision.
        latencies: Seconds of each timed iteration (host wall time of ``execute``).
        wall_seconds: Total wall time of the timed loop.
        compute_seconds: Per-iteration time inside layers (one profiled run).
        collective_seconds: Per-iteration time inside DistCollective layers (None = not
            measured).
        memory: One dict per rank: ``rank``, ``weight_bytes``, ``activation_bytes``.
        errors: ``--check``: output name -> max abs error vs the reference.
    """
    n = len(latencies)
    return {"model": model, "world_size": world_size, "device": device,
            "precision": precision, "iterations": n,
            "throughput_qps": n / wall_seconds if wall_seconds > 0 else 0.0,
            "latency_ms": latency_stats(latencies),
            "host_wall_time_s": wall_seconds,
            "compute_time_ms": compute_seconds * 1e3,
            "collectives_time_ms": None if collective_seconds is None
            else collective_seconds * 1e3,
            "memory": memory,
            "check": None if errors is None else {
                "max_abs_error": max(errors.values(), default=0.0), "per_output": errors}}


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines of a :func:`build_report` dict."""
    lat = report["latency_ms"]
    lines = [
        "=== Performance summary ===",
        f"Model: {report['model']}  ranks: {report['world_size']}  device: "
        f"{report['device']}  precision: {report['precision']}",
        f"Throughput: {report['throughput_qps']:.2f} qps",
        "Latency: " + ", ".join(f"{k} = {lat[k]:.4f} ms"
                                for k in ("min", "mean", "median", "p90", "p99", "max")),
        f"Host wall time: {report['host_wall_time_s']:.4f} s "
        f"({report['iterations']} iterations)",
        f"Compute time: {report['compute_time_ms']:.4f} ms per iteration (sum of layers)",
    ]
    coll = report["collectives_time_ms"]
    lines.append("Collectives time: " + ("n/a (one rank)" if coll is None
                                         else f"{coll:.4f} ms per iteration"))
    for m in report["memory"]:
        arena = m["activation_bytes"]
        lines.append(f"Memory rank {m['rank']}: weights {format_bytes(m['weight_bytes'])}, "
                     "activation arena peak "
                     + ("n/a (symbolic shapes)" if arena is None else format_bytes(arena)))
    if report["check"] is not None:
        lines.append(f"Check vs reference: max abs error = "
                     f"{report['check']['max_abs_error']:.3e}")
    return "\n".join(lines)

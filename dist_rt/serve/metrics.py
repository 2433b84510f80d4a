"""Prometheus metrics of the server, in a registry of its own (not the process-global one).

A private ``CollectorRegistry`` keeps tests that start several apps in one process apart and
leaves out the default process/GC collectors nobody asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0)


class Metrics:
    """Request counters, queue/compute time, batch sizes and per-rank memory.

    Args:
        model: Model name (the ``model`` label).
        max_batch: Largest batch, to size the batch histogram's buckets.
        memory: One dict per rank: ``rank``, ``weight_bytes``, ``activation_bytes``
            (gathered once at start; the arena is the planned peak, None if unplanned).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str, max_batch: int, memory: Sequence[Mapping[str, Any]]):
        self.model = model
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("dist_rt_requests", "Inference requests received",
                                ["model"], registry=r)
        self.failures = Counter("dist_rt_request_failures",
                                "Inference requests answered with an error, by HTTP status",
                                ["model", "code"], registry=r)
        self.queue_seconds = Histogram("dist_rt_queue_seconds",
                                       "Time from submission to the start of its batch",
                                       ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.compute_seconds = Histogram("dist_rt_compute_seconds",
                                         "Engine execution time per batch (all ranks)",
                                         ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("dist_rt_request_seconds",
                                         "End-to-end time of successful requests",
                                         ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        buckets, b = [], 1
        while b < max_batch:
            buckets.append(b)
            b *= 2
        self.batch_size = Histogram("dist_rt_batch_size", "Rows per engine execution",
                                    ["model"], buckets=[*buckets, max_batch], registry=r)
        memory_gauge = Gauge("dist_rt_rank_memory_bytes",
                             "Per-rank memory: weights and planned activation arena peak",
                             ["rank", "kind"], registry=r)
        for m in memory:
            memory_gauge.labels(str(m["rank"]), "weights").set(m["weight_bytes"] or 0)
            memory_gauge.labels(str(m["rank"]), "arena_peak").set(m["activation_bytes"] or 0)

    def request(self) -> None:
        """Count a received infer request."""
        self.requests.labels(self.model).inc()

    def failure(self, code: int) -> None:
        """Count a request answered with HTTP status ``code``."""
        self.failures.labels(self.model, str(code)).inc()

    def batch(self, rows: int, compute: float, queue_times: Sequence[float]) -> None:
        """Record one engine execution and the queue time of each request in it."""
        self.batch_size.labels(self.model).observe(rows)
        self.compute_seconds.labels(self.model).observe(compute)
        for t in queue_times:
            self.queue_seconds.labels(self.model).observe(t)

    def latency(self, seconds: float) -> None:
        """Record a successful request's end-to-end time."""
        self.request_seconds.labels(self.model).observe(seconds)

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)

"""Dynamic batching: concurrent requests of compatible shapes run as one engine call.

Two requests are compatible when their inputs have the same names, dtypes and shapes except
dim 0, and dim 0 of every input and output of the engine is the same symbolic batch dim (so
concatenating along it and splitting the outputs back is exact: rows never mix). The leader's
compute loop asks :meth:`Batcher.next_batch`, which takes the oldest request, then every
queued compatible request up to ``max_batch`` rows, waiting at most ``max_delay`` seconds
after the oldest arrived for more to come. Incompatible requests keep their place in the
queue for a later batch, so one odd shape does not stall the rest.

The HTTP handlers (event-loop thread) call :meth:`Batcher.submit`; the compute loop (main
thread, which owns MPI) consumes. A condition variable joins the two; a bounded queue turns
overload into a quick 503 instead of unbounded latency.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dist_rt.errors import DistRtError


class QueueFullError(DistRtError):
    """The request queue holds ``max_queue`` requests already (HTTP 503)."""


@dataclass(eq=False)  # identity: jobs are removed from the queue by identity
class Job:
    """One request waiting for the engine.

    Attributes:
        feeds: Input name -> array (already checked against the engine).
        rows: Size of dim 0 (the batch dim) of its inputs.
        key: Compatibility key; None when it must run alone.
        done: Called once from the compute thread with ``(outputs, None)`` or
            ``(None, error message)``.
        enqueued: ``time.perf_counter()`` at submission (queue time is measured from it).
    """

    feeds: dict[str, np.ndarray]
    rows: int
    key: Hashable | None
    done: Callable[[dict[str, np.ndarray] | None, str | None], None]
    enqueued: float = field(default_factory=time.perf_counter)


def batch_symbol(inputs: Sequence[tuple], outputs: Sequence[tuple]) -> str | None:
    """The symbolic dim every binding has first, or None when the engine cannot batch.

    Args:
        inputs: The engine's input bindings ``(name, dtype, shape)``.
        outputs: The engine's output bindings.
    """
    firsts = {shape[0] if shape else None for _, _, shape in [*inputs, *outputs]}
    if len(firsts) != 1:
        return None
    (first,) = firsts
    return first if isinstance(first, str) else None


def batch_key(feeds: dict[str, np.ndarray]) -> Hashable:
    """Requests with equal keys can be concatenated along dim 0."""
    return tuple(sorted((n, str(a.dtype), tuple(a.shape[1:])) for n, a in feeds.items()))


def concat(jobs: Sequence[Job]) -> dict[str, np.ndarray]:
    """The batch's feeds: each input concatenated along dim 0, in job order."""
    if len(jobs) == 1:
        return jobs[0].feeds
    return {name: np.concatenate([j.feeds[name] for j in jobs]) for name in jobs[0].feeds}


def split(jobs: Sequence[Job], outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Each job's rows of every output (the inverse of :func:`concat`)."""
    if len(jobs) == 1:
        return [outputs]
    parts, start = [], 0
    for job in jobs:
        parts.append({n: a[start:start + job.rows] for n, a in outputs.items()})
        start += job.rows
    return parts


class Batcher:
    """A bounded queue of jobs that hands out compatible batches.

    Args:
        max_batch: Most rows (sum of dim 0) per batch; 1 disables batching.
        max_delay: Seconds a batch may wait for more requests after its oldest arrived.
        max_queue: Most queued jobs; more raise :class:`QueueFullError`.
    """

    def __init__(self, max_batch: int, max_delay: float, max_queue: int):
        self.max_batch, self.max_delay, self.max_queue = max_batch, max_delay, max_queue
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)

    def submit(self, job: Job) -> None:
        """Queue a job.

        Raises:
            QueueFullError: ``max_queue`` jobs are waiting, or the server is stopping.
        """
        with self._cond:
            if self._closed:
                raise QueueFullError("the server is shutting down")
            if len(self._jobs) >= self.max_queue:
                raise QueueFullError(f"server overloaded: {self.max_queue} requests are "
                                     f"queued already (--max-queue); retry later")
            self._jobs.append(job)
            self._cond.notify()

    def next_batch(self, timeout: float) -> list[Job]:
        """The next batch, or ``[]`` when nothing arrived within ``timeout`` seconds.

        The oldest job always leads; later compatible jobs join until ``max_batch`` rows or
        until ``max_delay`` after the leader's arrival, whichever comes first.
        """
        with self._cond:
            if not self._jobs and not self._cond.wait_for(lambda: self._jobs or self._closed,
                                                          timeout):
                return []
            if not self._jobs:
                return []
            lead = self._jobs[0]
            deadline = lead.enqueued + self.max_delay
            while True:
                batch = self._compatible(lead)
                rows = sum(j.rows for j in batch)
                remaining = deadline - time.perf_counter()
                if lead.key is None or rows >= self.max_batch or remaining <= 0 \
                        or self._closed:
                    break
                self._cond.wait(remaining)
            for job in batch:
                self._jobs.remove(job)
            return batch

    def _compatible(self, lead: Job) -> list[Job]:
        batch, rows = [lead], lead.rows
        if lead.key is None:
            return batch
        for job in list(self._jobs)[1:]:
            if job.key == lead.key and rows + job.rows <= self.max_batch:
                batch.append(job)
                rows += job.rows
        return batch

    def close(self) -> list[Job]:
        """Refuse new jobs; return the ones still queued (the caller fails them)."""
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
            return left


def fail_all(jobs: Sequence[Job], message: str) -> None:
    """Answer every job with an error message."""
    for job in jobs:
        job.done(None, message)


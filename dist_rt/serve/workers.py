"""The ranks behind the server: engine setup, the leader's compute loop, the followers' loop.

Every rank builds (or loads) its shard of the engine exactly as ``python -m dist_rt.run``
does, reusing its steps. Rank 0 (the leader) owns the HTTP server and the batcher; for each
batch it broadcasts one small control message, ``{"op": "run", "feeds": {...}}``, then runs
its own shard. Ranks != 0 (followers) block in ``broadcast_object`` waiting for the next
message: ``run`` (execute), ``ping`` (keep-alive, see below) or ``stop`` (leave the loop).

After each execution every rank contributes its error (or None) to one
``all_gather_object``, so a failure on any rank fails that batch (HTTP 500 with every rank's
message) on all ranks at once and the loop goes on in step. A rank that dies, or raises
something that is not a ``DistRtError`` (a bug), ends the job: Hydra / mpirun kill the others
or ``abort`` does, so no rank waits forever for a peer that is gone.

Alternative rejected: sending the feeds with typed ``broadcast`` calls (header, then one
buffer per input) saves a pickle, but needs a second message for the header, and the inputs
of an inference request are small next to the execution itself.

Keep-alive: with ``DIST_RT_COLLECTIVE_TIMEOUT`` set, the MPI watchdog would abort a follower
that waits for work longer than the timeout, so an idle leader sends a ``ping`` at a third of
it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dist_rt import run as _cli
from dist_rt.errors import DistRtError, InputError, PlanMismatchError
from dist_rt.runtime import inputs as _inputs
from dist_rt.serve.batcher import Batcher, Job, concat, fail_all, split
from dist_rt.serve.metrics import Metrics


def setup_rank(args: argparse.Namespace, holder: dict[str, Any],
               log: Callable[[str], None] | None = None) -> tuple[Any, str]:
    """Discover ranks, attach the communicator and build or load this rank's engine.

    Args:
        args: The serve CLI's flags (``model``, ``device``, ``precision``, ``plan``,
            ``load_engine``, ``timing_cache``, ``max_batch``).
        holder: Gets ``"comm"`` (so the caller can abort on an error), ``"rank"``,
            ``"world"`` and ``"log"``.
        log: Progress printer (rank 0 only); default :class:`dist_rt.run.ProgressLog`.

    Returns:
        ``(engine, model_name)``; model_name is ``--name``, else the file's stem, else
        ``"default"`` for the embedded model.

    Raises:
        DistRtError: Any failure of discovery, parsing, planning or building, or ranks that
            hold engines of different plans.
    """
    from dist_rt.engine import Engine  # noqa: PLC0415 - keep `--help` fast
    from dist_rt.runtime.backends import resolve_device  # noqa: PLC0415

    info = _cli.discover_ranks()
    rank, world = (0, 1) if info is None else (info.rank, info.world_size)
    log = log or _cli.ProgressLog(rank)
    holder.update(rank=rank, world=world, log=log)
    device = resolve_device(args.device)
    _cli.limit_cpu_threads(info, device, log)
    comm = holder["comm"] = _cli.make_communicator(info, device)
    _cli.log_ranks(comm, log)
    if args.load_engine:
        path = _cli.engine_path(args.load_engine, rank)
        engine = Engine.load(path, rank=rank, world_size=world)
        log(f"load   {path}")
    else:
        network, _ = _cli.load_network(args.model, log)
        bindings = [(t.name, t.dtype, tuple(t.shape or ())) for t in network.inputs]
        shapes = serving_shapes(bindings, args.max_batch)
        local = network
        if world > 1:
            local = _cli.partition_network(network, args, rank, world, shapes, log, device)
        engine = _cli.build_engine(local, args, shapes, log, device=device)
    hashes = comm.all_gather_object(engine.plan_hash)
    if len(set(hashes)) != 1:
        raise PlanMismatchError(f"ranks hold engines of different plans: hashes "
                                f"{[h[:12] for h in hashes]} (rebuild every rank's engine)")
    name = args.name or (os.path.splitext(os.path.basename(args.model))[0] if args.model
                         else "default")
    return engine, name


def serving_shapes(bindings: list[tuple], max_batch: int) -> dict[str, tuple[int, ...]]:
    """Shapes to plan and build for: the CLI's defaults with a symbolic dim 0 at max_batch.

    Planning for the largest batch sizes the sharding cost model and the memory arena for the
    worst case the batcher can produce; the engine keeps its symbolic dims, so every smaller
    shape runs too.
    """
    shapes = _inputs.resolve_shapes(bindings, {})
    return {name: ((max_batch, *shapes[name][1:]) if shape and isinstance(shape[0], str)
                   else shapes[name]) for name, _, shape in bindings}


def execute_step(comm: Any, ctx: Any, feeds: dict[str, np.ndarray],
                 world: int) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """Run one batch on this rank and agree with the others on whether it failed.

    Every rank must call it for the same batch (it ends in a collective).

    Returns:
        ``(outputs, None)`` when every rank succeeded, else ``(None, message)`` naming each
        failing rank's error.
    """
    outputs, error = None, None
    try:
        outputs = ctx.execute(feeds)
    except DistRtError as exc:
        error = str(exc)
    if world > 1:
        errors = comm.all_gather_object(error)
        unique = list(dict.fromkeys(f"rank {r}: {e}" if not e.startswith("rank ") else e
                                    for r, e in enumerate(errors) if e))
        error = "; ".join(unique) or None
    return (None, error) if error else (outputs, None)


def follow(comm: Any, ctx: Any, world: int) -> int:
    """The loop of ranks != 0: execute what the leader broadcasts until it says stop.

    Returns:
        The number of batches executed.
    """
    batches = 0
    while True:
        message = comm.broadcast_object(None, root=0)
        op = message.get("op")
        if op == "stop":
            return batches
        if op == "run":
            execute_step(comm, ctx, message["feeds"], world)
            batches += 1


class Leader:
    """Rank 0's compute loop: batches from the batcher, broadcast, execute, split, answer.

    Runs on the main thread (the one that owns MPI); the HTTP server runs on another.

    Args:
        comm: The communicator.
        ctx: This rank's ExecutionContext (communicator attached).
        batcher: Where the HTTP handlers queue jobs.
        metrics: Where batch sizes and times go.
        world: World size.
    """

    def __init__(self, comm: Any, ctx: Any, batcher: Batcher, metrics: Metrics, world: int):
        self.comm, self.ctx, self.batcher, self.metrics, self.world = (comm, ctx, batcher,
                                                                       metrics, world)
        timeout = float(os.environ.get("DIST_RT_COLLECTIVE_TIMEOUT", "0") or 0)
        self._ping_every = timeout / 3 if timeout > 0 and world > 1 else None
        self._last_message = time.monotonic()
        self.batches = 0

    def serve(self, keep_going: Callable[[], bool]) -> None:
        """Execute batches while ``keep_going()``; then answer what is left with 503."""
        while keep_going():
            jobs = self.batcher.next_batch(timeout=0.05)
            if jobs:
                self.execute(jobs)
            elif self._ping_every and time.monotonic() - self._last_message > self._ping_every:
                self._broadcast({"op": "ping"})
        fail_all(self.batcher.close(), "the server is shutting down")

    def execute(self, jobs: list[Job]) -> None:
        """Run one batch on every rank and answer each of its jobs."""
        feeds = concat(jobs)
        if len(jobs) > 1:
            try:
                # The merged batch may break an optimization profile's bounds: then run each
                # request on its own rather than failing requests that were fine alone.
                self.ctx.check_inputs(feeds)
            except InputError:
                for job in jobs:
                    self.execute([job])
                return
        started = time.perf_counter()
        if self.world > 1:
            self._broadcast({"op": "run", "feeds": feeds})
        outputs, error = execute_step(self.comm, self.ctx, feeds, self.world)
        compute = time.perf_counter() - started
        self.batches += 1
        self.metrics.batch(sum(j.rows for j in jobs), compute,
                           [started - j.enqueued for j in jobs])
        if error is not None:
            fail_all(jobs, error)
            return
        for job, part in zip(jobs, split(jobs, outputs), strict=True):
            job.done(part, None)

    def stop(self) -> None:
        """Tell the followers to leave their loop (after the last batch)."""
        if self.world > 1:
            self._broadcast({"op": "stop"})

    def _broadcast(self, message: dict[str, Any]) -> None:
        self.comm.broadcast_object(message, root=0)
        self._last_message = time.monotonic()

"""``python -m dist_rt.run [MODEL.onnx]``: build and benchmark a model on N ranks (trtexec-like).

Under ``mpiexec -n N`` every rank runs this same program (SPMD): discover ranks; parse the
model (or generate the embedded default: a small Llama decoder, ``input_ids`` int64
(batch, seq), default shapes batch 1, seq 16); with N > 1 plan the sharding and partition;
build this rank's engine; attach the communicator; rank 0 makes or reads the inputs and
broadcasts them; run warmup + timed iterations; rank 0 prints the report and writes outputs.

Any ``DistRtError`` on any rank prints one line ``dist_rt: error: ...`` on stderr, aborts the
communicator (which ends every rank) and exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from dist_rt.errors import DistRtError, PlanMismatchError
from dist_rt.runtime import inputs as _inputs
from dist_rt.runtime import report as _report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The CLI flags of DESIGN.md."""
    p = argparse.ArgumentParser(prog="python -m dist_rt.run", description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?", help="ONNX model (default: the embedded Llama decoder)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    p.add_argument("--inputs", metavar="FILE.npz", help="named input arrays (default: random)")
    p.add_argument("--shapes", metavar="name:2x16,...", help="input shapes")
    p.add_argument("--save-outputs", metavar="FILE.npz", help="rank 0 writes the outputs")
    p.add_argument("--plan", default="auto", metavar="{auto,replicate,FILE.json}",
                   help="sharding plan: search, replicate everything, or a hints file")
    p.add_argument("--save-engine", metavar="DIR", help="write one plan file per rank")
    p.add_argument("--load-engine", metavar="DIR", help="load one plan file per rank")
    p.add_argument("--warmup", type=int, default=2, metavar="N")
    p.add_argument("--iterations", type=int, default=10, metavar="N")
    p.add_argument("--check", action="store_true",
                   help="compare with an unsharded, unoptimized fp32 run; print the max error")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--no-cuda-graph", action="store_true", help="do not capture CUDA graphs")
    p.add_argument("--timing-cache", metavar="FILE", help="tactic timing cache")
    p.add_argument("--verbose", action="store_true", help="engine summary, per-layer times")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.iterations < 1:
        p.error("--warmup must be >= 0 and --iterations >= 1")
    if args.save_engine and args.load_engine:
        p.error("--save-engine and --load-engine are exclusive")
    return args


class _Log:
    """Progress lines on stderr, rank 0 only (other ranks stay quiet)."""

    def __init__(self, rank: int):
        self.rank = rank
        self.t0 = time.perf_counter()

    def __call__(self, line: str) -> None:
        if self.rank == 0:
            print(f"[dist_rt {time.perf_counter() - self.t0:7.2f}s] {line}", file=sys.stderr,
                  flush=True)


def _discover() -> Any:
    import launch  # noqa: PLC0415 - keep `--help` fast

    return launch.discover()


def _communicator(info: Any, device: str) -> Any:
    from collectives import LocalCommunicator, create_communicator  # noqa: PLC0415

    if info is None or info.world_size == 1:
        return LocalCommunicator(device="cpu")
    return create_communicator("nccl" if device == "cuda" else "mpi", info=info)


def _limit_cpu_threads(info: Any, device: str, log: _Log) -> None:
    """On CPU with several ranks on a node, give each rank its share of the cores' BLAS
    threads (``launch/threads.py``: unlimited pools made 2 ranks on 2 cores 9x slower)."""
    if device != "cpu" or info is None or info.world_size <= 1:
        return
    from launch.threads import limit_blas_threads  # noqa: PLC0415

    log("threads " + limit_blas_threads(info))


def _log_ranks(comm: Any, log: _Log) -> None:
    """Log which process is which rank, so a launcher's "PID 1234 killed" names the rank."""
    if getattr(comm, "size", 1) <= 1:
        return
    who = comm.all_gather_object((socket.gethostname(), os.getpid()))
    log("ranks  " + ", ".join(f"{r}={host}:{pid}" for r, (host, pid) in enumerate(who)))


def _load_network(model: str | None, log: _Log):
    t0 = time.perf_counter()
    from dist_rt.models import default_model  # noqa: PLC0415
    from dist_rt.onnx.importer import parse_onnx  # noqa: PLC0415

    if model is None:
        network = parse_onnx(default_model())
        name = "default (Llama decoder)"
    else:
        network = parse_onnx(model)
        name = model
    log(f"parse  {name}: {len(network.layers)} layers, {network.weight_bytes() / 2**20:.2f} "
        f"MiB weights ({time.perf_counter() - t0:.2f} s)")
    return network, name


def _partition(network, args, rank: int, world: int, shapes, log: _Log, device: str):
    import sharding  # noqa: PLC0415

    hints = None if args.plan == "auto" else args.plan
    t0 = time.perf_counter()
    # The cost model follows the device the engines will run on, not this machine's.
    plan = sharding.plan(network, world, hints=hints, input_shapes=shapes, device=device)
    log(f"plan   {world} ranks ({time.perf_counter() - t0:.2f} s)")
    if rank == 0:
        print(plan.summary(), flush=True)
    return plan.partition(rank)


def _engine_path(directory: str, rank: int) -> str:
    return os.path.join(directory, f"engine.r{rank}.plan")


def _build(network, args, shapes, log: _Log, **overrides):
    from dist_rt.builder import Builder, BuilderConfig  # noqa: PLC0415

    cfg = BuilderConfig(device=overrides.get("device", args.device),
                        precision=overrides.get("precision", args.precision),
                        optimization_level=overrides.get("optimization_level", 2),
                        timing_cache=overrides.get("timing_cache", args.timing_cache))
    log(f"build  {cfg.device}, {cfg.precision}, optimization level {cfg.optimization_level}")
    return Builder(cfg, progress=log).build(network, input_shapes=shapes)


def _run(args: argparse.Namespace, holder: dict[str, Any]) -> int:
    info = _discover()
    rank, world = (0, 1) if info is None else (info.rank, info.world_size)
    log = _Log(rank)
    from dist_rt.engine import Engine  # noqa: PLC0415
    from dist_rt.runtime.backends import resolve_device  # noqa: PLC0415

    device = resolve_device(args.device)
    _limit_cpu_threads(info, device, log)
    comm = holder["comm"] = _communicator(info, device)
    _log_ranks(comm, log)
    network, model_name = None, args.model or "default"
    given = _inputs.parse_shapes(args.shapes)
    feeds = _inputs.load_npz(args.inputs) if (args.inputs and rank == 0) else None
    if args.load_engine:
        engine = Engine.load(_engine_path(args.load_engine, rank), rank=rank, world_size=world)
        log(f"load   {_engine_path(args.load_engine, rank)}")
        bindings = engine.inputs
    else:
        network, model_name = _load_network(args.model, log)
        bindings = [(t.name, t.dtype, tuple(t.shape or ())) for t in network.inputs]
    shapes = _inputs.resolve_shapes(
        bindings, {**({k: v.shape for k, v in feeds.items()} if feeds else {}), **given})
    if world > 1:
        # Only rank 0 read --inputs: every rank must plan and build for the same shapes.
        shapes = {k: tuple(v) for k, v in comm.broadcast_object(shapes, root=0).items()}
    if not args.load_engine:
        local = network
        if world > 1:
            local = _partition(network, args, rank, world, shapes, log, device)
        engine = _build(local, args, shapes, log, device=device)
        if args.save_engine:
            os.makedirs(args.save_engine, exist_ok=True)
            engine.save(_engine_path(args.save_engine, rank))
            log(f"saved  {_engine_path(args.save_engine, rank)}")
    hashes = comm.all_gather_object(engine.plan_hash)
    if len(set(hashes)) != 1:
        raise PlanMismatchError(f"ranks hold engines of different plans: hashes "
                                f"{[h[:12] for h in hashes]} (rebuild every rank's engine)")
    if rank == 0 and feeds is None:
        bounds = _inputs.index_bounds(network or engine.network)
        feeds = _inputs.random_inputs(engine.inputs, shapes, args.seed, bounds)
    feeds = comm.broadcast_object(feeds, root=0) if world > 1 else feeds

    with engine.create_execution_context() as ctx:
        ctx.set_communicator(comm)
        ctx.use_cuda_graph = not args.no_cuda_graph  # CUDA backend: capture + replay
        for _ in range(args.warmup):
            outputs = ctx.execute(feeds)
        latencies = []
        start = time.perf_counter()
        for _ in range(args.iterations):
            t0 = time.perf_counter()
            outputs = ctx.execute(feeds)
            latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
        ctx.profiling = True
        ctx.execute(feeds)
        compute = sum(ctx.layer_times.values())
        layer_times = dict(ctx.layer_times)
        collective = ctx.collective_seconds if world > 1 else None
    memory = comm.all_gather_object({"rank": rank, "weight_bytes": engine.weight_bytes,
                                     "activation_bytes": engine.activation_bytes})
    errors = None
    if args.check and rank == 0:
        errors = _check(args, network, shapes, feeds, outputs, log)
    if rank == 0:
        report = _report.build_report(
            model=model_name, world_size=world, device=engine.device,
            precision=engine.precision, latencies=latencies, wall_seconds=wall,
            compute_seconds=compute, collective_seconds=collective, memory=memory,
            errors=errors)
        if args.verbose:
            print(engine.summary())
            top = sorted(layer_times.items(), key=lambda kv: -kv[1])[:10]
            print("Slowest layers: " + ", ".join(f"{n} {t * 1e3:.3f} ms" for n, t in top))
        print(_report.format_report(report), flush=True)
        if args.json:
            _write(args.json, lambda f: json.dump(report, f, indent=2))
        if args.save_outputs:
            _write(args.save_outputs, lambda f: np.savez(f, **outputs), binary=True)
    comm.barrier()
    return 0


def _check(args, network, shapes, feeds, outputs, log: _Log) -> dict[str, float]:
    if network is None:
        network, _ = _load_network(args.model, log)
    log("check  building the unsharded fp32 reference at optimization level 0")
    # No timing cache: the reference runs the plain ops, and a CPU build must not replace
    # the entries a CUDA build keeps in the same file.
    ref_engine = _build(network, args, shapes, log, device="cpu", precision="fp32",
                        optimization_level=0, timing_cache=None)
    with ref_engine.create_execution_context() as ctx:
        ref = ctx.execute(feeds)
    return _inputs.max_errors(outputs, ref)


def _write(path: str, fn, binary: bool = False) -> None:
    try:
        with open(path, "wb" if binary else "w") as f:
            fn(f)
    except OSError as exc:
        raise DistRtError(f"cannot write {path!r}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dist_rt.run`` and the ``dist-rt`` console script.

    Returns:
        0 on success, 1 on a dist_rt error (one line on stderr), 130 on Ctrl-C.
    """
    args = parse_args(argv)
    holder: dict[str, Any] = {"comm": None}
    try:
        return _run(args, holder)
    except KeyboardInterrupt:
        print("dist_rt: interrupted", file=sys.stderr)
        return 130
    except DistRtError as exc:
        print(f"dist_rt: error: {exc}", file=sys.stderr, flush=True)
        _abort(holder["comm"], str(exc))
        return 1
    except Exception as exc:
        # A bug, not a user error: keep the traceback, but never leave other ranks hanging.
        _abort(holder["comm"], f"{type(exc).__name__}: {exc}")
        raise


def _abort(comm: Any, reason: str) -> None:
    if comm is not None and getattr(comm, "size", 1) > 1:
        comm.abort(reason)


# The steps ``python -m dist_rt.serve`` shares with this CLI (same discovery, parse, plan,
# build and abort behaviour), under public names.
ProgressLog = _Log
discover_ranks = _discover
make_communicator = _communicator
limit_cpu_threads = _limit_cpu_threads
log_ranks = _log_ranks
load_network = _load_network
partition_network = _partition
build_engine = _build
engine_path = _engine_path
abort_job = _abort


if __name__ == "__main__":
    sys.exit(main())

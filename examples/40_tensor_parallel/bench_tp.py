"""dist_rt tensor parallelism vs PyTorch TP on a Llama-7B-shaped model, N = 1, 2, 4 in one job.

Run one process per GPU under one ``mpirun -n 4`` (see README.md). Every rank runs this
program (SPMD); a pass at N uses world ranks ``0 .. N-1`` and the others wait at the barrier
that ends the pass::

    phase       ranks        what
    setup       all          world control channel (MPI), GPU binding
    generate    0            random Llama weights -> WORKDIR/llama.onnx + .data (64-B aligned)
    parse       all          parse_onnx: weights stay memory-mapped
    dist_rt N   0 .. N-1     MPI sub-communicator (Split) [-> NCCL on it]; plan, partition
                             (reads only this rank's slices), build, check, time each shape
    torch N     0 .. N-1     DeviceMesh of ranks 0..N-1; parallelize_module; eager, compile
    report      0            tables, speed-up / efficiency, targets, JSON, PNG

The timings are medians over ``--iters`` runs after ``--warmup`` (CUDA events on GPU,
``perf_counter`` on CPU), taken on every rank of the pass; the slowest rank's median is
reported. Logits of every dist_rt pass are checked against dist_rt at N = 1, and each torch
pass against dist_rt at the same N. Rank 0 rewrites the JSON after every pass, so a run cut
short still leaves its numbers.

Time bounds: every phase has a deadline (``--phase-timeout``, and the whole run
``--time-limit``); a watchdog thread aborts the job (``MPI_Abort``) when one passes, naming
the phase. torch.compile is skipped for the remaining passes when less than
``--compile-reserve`` seconds are left.

Weights: ``make_llama``'s generator draws float64 normals for all ~7e9 values (minutes).
``_fast_weights`` swaps ``GraphBuilder.weight`` while it runs, cutting windows out of one
float32 normal pool per (std, mean) at random offsets: memcpy speed, same scales, so
activations stay O(1). The values are a benchmark's, not a trained model's.

CPU smoke test (what tests/examples/test_tp_bench.py runs):
``mpiexec -n 2 python examples/40_tensor_parallel/bench_tp.py --device cpu --backend mpi
--skip-torch --hidden 64 --heads 4 --kv-heads 2 --mlp 128 --layers 2 --vocab 256
--dtype float32 --shapes 1x1,2x8 --iters 3 --json out.json``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from tp_report import (  # noqa: E402
    check,
    collect,
    plot,
    print_report,
    summarize,
    targets,
    write_json,
)

from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs  # noqa: E402
from launch import RankInfo, discover  # noqa: E402

PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
#: Megatron hints for ``--plan megatron`` (layer names as make_llama exports them).
MEGATRON = {"layers": {"*/q_proj/*": "column", "*/k_proj/*": "column", "*/v_proj/*": "column",
                       "*/gate_proj/*": "column", "*/up_proj/*": "column",
                       "*/o_proj/*": "row", "*/down_proj/*": "row"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags; the defaults are the 7B shape of issue 10 on GPUs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_argument_group("model (default: Llama-2/3-7B-like, 8 KV heads)")
    g.add_argument("--hidden", type=int, default=4096)
    g.add_argument("--heads", type=int, default=32)
    g.add_argument("--kv-heads", type=int, default=8)
    g.add_argument("--mlp", type=int, default=14336)
    g.add_argument("--layers", type=int, default=32)
    g.add_argument("--vocab", type=int, default=32000)
    g.add_argument("--max-seq", type=int, default=2048)
    g.add_argument("--dtype", choices=tuple(PRECISION), default="float16")
    g.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("run")
    r.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    r.add_argument("--backend", choices=("nccl", "mpi"), default=None,
                   help="dist_rt communicator (default: nccl on cuda, mpi on cpu)")
    r.add_argument("--sizes", default=None, help="N values, e.g. 1,2,4 (default: powers of two "
                   "up to the world size)")
    r.add_argument("--shapes", default="1x1,16x1,1x2048", help="batch x seq list")
    r.add_argument("--plan", default="megatron", metavar="{megatron,auto,FILE.json}",
                   help="dist_rt sharding: Megatron hints (default), the planner's search, or "
                        "a hints file")
    r.add_argument("--level", type=int, default=2,
                   help="builder optimization level (3: fusions + tactics timed on each rank; "
                        "on 4 H200s it moved 1x2048 by <1%% and made N=1 decode ~6%% slower)")
    r.add_argument("--tactic-shape", default=None,
                   help="batch x seq the level-3 tactics are timed at (default: the --shapes "
                        "entry with the most tokens; a layer runs its tactic only there)")
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--iters", type=int, default=20)
    r.add_argument("--no-cuda-graph", action="store_true")
    r.add_argument("--unfused-gate", action="store_true",
                   help="build without fuse_matmul_silu (gate/up GEMM and SiLU gate as two "
                        "layers), for A/B runs")
    r.add_argument("--skip-torch", action="store_true", help="dist_rt only (no torch needed)")
    r.add_argument("--no-compile", action="store_true", help="torch eager only")
    r.add_argument("--tol", type=float, default=2e-2,
                   help="logits check: max|a-b| <= tol * max(1, max|ref|)")
    o = p.add_argument_group("output and limits")
    o.add_argument("--json", default="tp_bench.json")
    o.add_argument("--plot", default=None, help="PNG path (default: the JSON path + .png)")
    o.add_argument("--workdir", default=None,
                   help="where llama.onnx goes; reused when its config matches (default: a "
                        "temp dir, removed at the end)")
    o.add_argument("--time-limit", type=float, default=570.0, help="whole run, seconds")
    o.add_argument("--phase-timeout", type=float, default=300.0, help="one phase, seconds")
    o.add_argument("--compile-reserve", type=float, default=150.0,
                   help="skip torch.compile when fewer seconds are left")
    args = p.parse_args(argv)
    args.backend = args.backend or ("nccl" if args.device == "cuda" else "mpi")
    if args.backend == "nccl" and args.device == "cpu":
        p.error("--backend nccl needs --device cuda")
    if args.warmup < 0 or args.iters < 1:
        p.error("--warmup must be >= 0 and --iters >= 1")
    try:
        args.shape_list = [tuple(int(v) for v in s.lower().split("x")) for s in
                           args.shapes.split(",")]
    except ValueError:
        p.error(f"--shapes {args.shapes!r}: expected BxS,BxS,... (e.g. 1x1,16x1,1x2048)")
    if any(len(s) != 2 or min(s) < 1 or s[1] > args.max_seq for s in args.shape_list):
        p.error(f"--shapes {args.shapes!r}: each must be BxS with 1 <= S <= --max-seq")
    return args


# -- progress, deadlines -----------------------------------------------------------------------

class Job:
    """This rank's place in the job, its world control channel, log and watchdog.

    Attributes:
        info: ``launch.discover()`` result (world rank, size, local rank).
        world: ``MpiCommunicator`` over every rank: barriers and small control messages.
        phases: ``[{"name", "seconds"}]`` of the phases finished so far.
    """

    def __init__(self, args: argparse.Namespace):
        from collectives.mpi import MpiCommunicator  # noqa: PLC0415 - mpi4py, lazily

        self.args = args
        self.t0 = time.monotonic()
        self.info = discover()
        self.rank, self.size = self.info.rank, self.info.world_size
        self.world = MpiCommunicator()
        self.phases: list[dict[str, Any]] = []
        self._deadline: tuple[str, float] | None = None
        #: Communicators of finished passes, closed at the end of the job (see
        #: ``sub_communicator``).
        self.deferred: list[Any] = []
        threading.Thread(target=self._watch, name="tp-bench-watchdog", daemon=True).start()

    def log(self, msg: str, all_ranks: bool = False) -> None:
        """One timestamped progress line on stderr (rank 0, or every rank)."""
        if self.rank == 0 or all_ranks:
            print(f"[tp {time.strftime('%H:%M:%S')} +{time.monotonic() - self.t0:6.1f}s "
                  f"r{self.rank}] {msg}", file=sys.stderr, flush=True)

    def left(self) -> float:
        """Seconds left of ``--time-limit``."""
        return self.args.time_limit - (time.monotonic() - self.t0)

    @contextlib.contextmanager
    def phase(self, name: str, limit: float | None = None) -> Iterator[None]:
        """Run a phase under a deadline; the watchdog aborts every rank when it passes."""
        limit = min(limit or self.args.phase_timeout, self.left())
        self._deadline = (name, time.monotonic() + limit)
        start = time.monotonic()
        self.log(f"{name}: start (limit {limit:.0f} s)")
        try:
            yield
        finally:
            self._deadline = None
        self.phases.append({"name": name, "seconds": time.monotonic() - start})
        self.log(f"{name}: done in {time.monotonic() - start:.1f} s")

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            current = self._deadline
            if current is not None and time.monotonic() > current[1]:
                # Where every thread of this rank is stuck, before the job ends.
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                self.world.abort(f"rank {self.rank}/{self.size}: phase {current[0]!r} passed "
                                 f"its time limit (--phase-timeout / --time-limit)")
                return


# -- model ------------------------------------------------------------------------------------

@contextlib.contextmanager
def _fast_weights(seed: int, data_path: str, pool_size: int = 1 << 24) -> Iterator[None]:
    """Swap ``GraphBuilder.weight`` while ``make_llama`` runs (module docstring).

    Each weight is cut from a shared normal pool per (std, mean) at random offsets (several
    windows concatenated when it is larger than the pool) and written straight to
    ``data_path``, 64-byte aligned like ``models.write``; the graph gets an external-data
    initializer. The model proto thus never holds the weights, and no copy of 14 GiB goes
    through protobuf (``make_llama``'s own externalize skips tensors already external).
    """
    from onnx import TensorProto  # noqa: PLC0415

    from dist_rt.models._graph import GraphBuilder  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    base = rng.standard_normal(pool_size, dtype=np.float32)
    pools: dict[tuple[float, float, str], np.ndarray] = {}
    original = GraphBuilder.weight
    location = os.path.basename(data_path)

    def weight(self, name, shape, std, mean=0.0):  # same signature as GraphBuilder.weight
        key = (float(std), float(mean), str(self.dtype))
        if key not in pools:
            pools[key] = (base * np.float32(std) + np.float32(mean)).astype(self.dtype)
        pool, count, parts = pools[key], int(np.prod(shape)), []
        while count > 0:
            k = min(count, pool_size)
            start = int(rng.integers(0, pool_size - k + 1))
            parts.append(pool[start:start + k])
            count -= k
        offset = f.tell() + (-f.tell() % 64)
        f.write(b"\0" * (offset - f.tell()))
        for part in parts:
            f.write(memoryview(part.view(np.uint8)))
        t = TensorProto(name=self._unique(name), data_type=self.elem_type, dims=list(shape),
                        data_location=TensorProto.EXTERNAL)
        for k, v in (("location", location), ("offset", str(offset)),
                     ("length", str(f.tell() - offset))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        self.initializers.append(t)
        return t.name

    GraphBuilder.weight = weight
    try:
        with open(data_path, "wb") as f:
            yield
    finally:
        GraphBuilder.weight = original


def model_config(args: argparse.Namespace) -> LlamaConfig:
    """The ``LlamaConfig`` the flags describe."""
    return LlamaConfig(vocab=args.vocab, hidden=args.hidden, layers=args.layers,
                       heads=args.heads, kv_heads=args.kv_heads, mlp=args.mlp,
                       max_seq=args.max_seq, dtype=args.dtype, seed=args.seed)


def generate(cfg: LlamaConfig, workdir: str, job: Job) -> str:
    """Rank 0: write ``workdir/llama.onnx`` (+ ``.data``) unless a matching one is there."""
    path = os.path.join(workdir, "llama.onnx")
    stamp = os.path.join(workdir, "config.json")
    want = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    if os.path.exists(path) and os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            if f.read() == want:
                job.log(f"generate: reusing {path}")
                return path
    import onnx  # noqa: PLC0415

    with _fast_weights(cfg.seed, os.path.join(workdir, "weights.bin")):
        model = make_llama(cfg, external_data_dir=workdir)
    onnx.save_model(model, path)
    del model
    with open(stamp, "w", encoding="utf-8") as f:
        f.write(want)
    size = sum(os.path.getsize(os.path.join(workdir, f)) for f in ("weights.bin",
                                                                  "llama.onnx.data"))
    job.log(f"generate: {path} with {size / 2**30:.2f} GiB of weights")
    return path


# -- timing -----------------------------------------------------------------------------------

def time_ms(fn: Callable[[], Any], args: argparse.Namespace, gpu: Any) -> list[float]:
    """``--iters`` timings of ``fn`` in ms after ``--warmup`` calls.

    Args:
        fn: One forward pass (asynchronous on GPU).
        args: Flags (warmup, iters).
        gpu: ``(event_factory, elapsed_ms, synchronize)`` for CUDA events, or None (CPU).

    Returns:
        The per-iteration times.
    """
    for _ in range(args.warmup):
        fn()
    out = []
    if gpu is None:
        for _ in range(args.iters):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return out
    event, elapsed, sync = gpu
    sync()
    for _ in range(args.iters):
        start, end = event(), event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(elapsed(start, end))
    return out


def _cupy_timer() -> Any:
    import cupy  # noqa: PLC0415

    return (cupy.cuda.Event, cupy.cuda.get_elapsed_time, cupy.cuda.Device().synchronize)


def _torch_timer() -> Any:
    import torch  # noqa: PLC0415

    return (lambda: torch.cuda.Event(enable_timing=True), lambda a, b: a.elapsed_time(b),
            torch.cuda.synchronize)


# -- dist_rt ----------------------------------------------------------------------------------

@contextlib.contextmanager
def sub_communicator(job: Job, n: int) -> Iterator[Any]:
    """World ranks ``0..n-1``'s communicator for one pass (None on the idle ranks).

    Collective over the whole world (``MPI_Comm_split``). Rank table for n = 2 in a world of
    4: world ranks 0, 1 -> pass ranks 0, 1; world ranks 2, 3 -> idle (None).

    Teardown order: NCCL communicator, then its MPI side channel, then the split communicator.
    NCCL communicators are not destroyed here but at the end of the job
    (:func:`close_deferred`): a 4-GPU run (2026-11-21) stopped in the teardown after the
    N = 2 pass, and deferring it keeps the later passes' numbers even if destroying hangs.
    """
    from mpi4py import MPI  # noqa: PLC0415

    from collectives import LocalCommunicator  # noqa: PLC0415
    from collectives.mpi import MpiCommunicator  # noqa: PLC0415

    member = job.rank < n
    split = MPI.COMM_WORLD.Split(0 if member else MPI.UNDEFINED, job.rank)
    side = comm = None
    try:
        if not member:
            yield None
            return
        if n == 1:
            comm = LocalCommunicator(device="cpu")
        else:
            side = MpiCommunicator(comm=split)
            comm = side
            if job.args.backend == "nccl":
                from collectives.nccl import NcclCommunicator  # noqa: PLC0415

                info = RankInfo(job.rank, n, job.info.local_rank, job.info.local_size,
                                job.info.source)
                comm = NcclCommunicator(info=info, side=side)
                job.log(f"N={n}: small all-reduces: {getattr(comm, 'nvlink_status', 'NCCL')}")
        yield comm
    finally:
        if comm is not None:
            job.deferred.append((comm, side, split))
        elif split != MPI.COMM_NULL:
            split.Free()


def close_deferred(job: Job) -> None:
    """Close the passes' communicators (NCCL, then side channel, then split), logging each."""
    from mpi4py import MPI  # noqa: PLC0415

    for comm, side, split in job.deferred:
        name = type(comm).__name__
        if comm is not side:
            comm.close()
            job.log(f"teardown: {name} closed", all_ranks=True)
        if side is not None:
            side.close()
        if split != MPI.COMM_NULL:
            split.Free()
    job.deferred.clear()


def dist_rt_pass(job: Job, n: int, network: Any, cfg: LlamaConfig,
                 keep: dict[tuple[str, int, str], np.ndarray]) -> dict[str, Any]:
    """Plan, partition, build and time dist_rt at N = ``n`` on world ranks ``0..n-1``.

    Args:
        job: This rank's job.
        n: Ranks of this pass.
        network: The parsed, unsharded network (memory-mapped weights).
        cfg: Its config (for the inputs).
        keep: Rank 0 stores logits here under ``("dist_rt", n, shape)``.

    Returns:
        ``{"plan": collective counts, "rows": [{shape, times_ms}]}`` on rank 0 (the times of
        this rank; the caller takes the slowest rank), ``{}`` on idle ranks.
    """
    import sharding  # noqa: PLC0415
    from dist_rt import Builder, BuilderConfig  # noqa: PLC0415
    from dist_rt.builder.passes import fuse_matmul_silu  # noqa: PLC0415

    args = job.args
    out: dict[str, Any] = {}
    with sub_communicator(job, n) as comm:
        if comm is None:
            return out
        local, counts = network, {}
        if n > 1:
            hints = MEGATRON if args.plan == "megatron" else args.plan
            plan = sharding.plan(network, n, hints=hints, device=args.device,
                                 input_shapes={"input_ids": args.shape_list[0]})
            counts = plan.collective_counts()
            local = plan.partition(job.rank)
            job.log(f"dist_rt N={n}: plan {counts or 'replicated (no collectives)'}")
        tactic_shape = (tuple(int(v) for v in args.tactic_shape.split("x"))
                        if args.tactic_shape else max(args.shape_list, key=lambda s: s[0] * s[1]))
        gate = (mock.patch.object(fuse_matmul_silu, "on_cuda", lambda state: False)
                if args.unfused_gate else contextlib.nullcontext())
        with gate:
            engine = Builder(BuilderConfig(device=args.device, precision=PRECISION[args.dtype],
                                           optimization_level=args.level)).build(
                local, input_shapes={"input_ids": tactic_shape} if args.level >= 3 else None)
        del local
        job.log(f"dist_rt N={n}: built, {engine.weight_bytes / 2**30:.2f} GiB weights on rank "
                f"{job.rank}; fuse_allreduce_norm: "
                f"{engine.build_notes.get('fuse_allreduce_norm', 'not run')}; tactics: "
                f"{engine.build_notes.get('tactics', 'not run')}")
        gpu = _cupy_timer() if args.device == "cuda" else None
        rows = []
        with engine.create_execution_context() as ctx:
            ctx.set_communicator(comm)
            ctx.use_cuda_graph = not args.no_cuda_graph
            for batch, seq in args.shape_list:
                shape = f"{batch}x{seq}"
                ids = sample_inputs(cfg, batch, seq, seed=batch * 7 + seq)["input_ids"]
                if gpu is not None:
                    import cupy  # noqa: PLC0415

                    ids = cupy.asarray(ids)
                feeds = {"input_ids": ids}
                logits = ctx.execute(feeds)["logits"]
                if job.rank == 0:
                    keep[("dist_rt", n, shape)] = logits
                comm.barrier()
                times = time_ms(lambda f=feeds: ctx.execute(f, copy_outputs=False), args, gpu)
                rows.append({"shape": shape, "times_ms": times})
                job.log(f"dist_rt N={n} {shape}: median {np.median(times):.3f} ms (rank "
                        f"{job.rank})")
        job.log(f"dist_rt N={n}: context closed", all_ranks=True)
        out = {"plan": counts, "rows": rows, "weight_bytes": engine.weight_bytes}
        del engine
        gc.collect()
        if args.device == "cuda":
            import cupy  # noqa: PLC0415

            cupy.cuda.Device().synchronize()
            cupy.get_default_memory_pool().free_all_blocks()
    return out


# -- torch ------------------------------------------------------------------------------------

class TorchSide:
    """torch.distributed over the same processes (NCCL on GPU, gloo on CPU)."""

    def __init__(self, job: Job):
        import torch  # noqa: PLC0415
        import torch._dynamo  # noqa: PLC0415
        import torch.distributed as dist  # noqa: PLC0415

        self.torch, self.dist, self.job = torch, dist, job
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29541")
        if job.args.device == "cuda":
            torch.cuda.set_device(job.info.local_rank % torch.cuda.device_count())
            self.device = torch.device("cuda", torch.cuda.current_device())
            dist.init_process_group("nccl", rank=job.rank, world_size=job.size,
                                    device_id=self.device)
        else:
            self.device = torch.device("cpu")
            dist.init_process_group("gloo", rank=job.rank, world_size=job.size)
        for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                     "accumulated_recompile_limit"):
            # One compiled block serves every layer; leave room for the shapes and N values.
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(256, getattr(torch._dynamo.config, name)))
        self.dtype = getattr(torch, job.args.dtype)

    def run(self, n: int, network: Any, cfg: LlamaConfig, compile_ok: bool,
            keep: dict[tuple[str, int, str], np.ndarray]) -> dict[str, Any]:
        """Build the TP model on ranks ``0..n-1`` and time eager (and compiled) forwards.

        The mesh is created on every world rank (``new_group`` is collective over the world);
        ranks outside it return ``{}``.
        """
        import torch_tp_llama  # noqa: PLC0415
        from torch.distributed.device_mesh import DeviceMesh  # noqa: PLC0415

        torch, job, args = self.torch, self.job, self.job.args
        dev_type = "cuda" if args.device == "cuda" else "cpu"
        mesh = DeviceMesh(dev_type, list(range(n))) if n > 1 else None
        if job.rank >= n:
            return {}
        model = torch_tp_llama.build(cfg, lambda name: network.tensors[name].weights.numpy(),
                                     self.device, mesh, self.dtype)
        job.log(f"torch N={n}: model built and sharded")
        gpu = _torch_timer() if args.device == "cuda" else None
        rows = []
        modes = ["torch_eager"] + (["torch_compile"] if compile_ok else [])
        with torch.inference_mode():
            for mode in modes:
                model.use_compiled(mode == "torch_compile")
                for batch, seq in args.shape_list:
                    shape = f"{batch}x{seq}"
                    ids = torch.from_numpy(
                        sample_inputs(cfg, batch, seq, seed=batch * 7 + seq)["input_ids"]
                    ).to(self.device)
                    t0 = time.monotonic()
                    logits = model(ids)
                    if job.rank == 0:
                        keep[(mode, n, shape)] = logits.cpu().numpy()
                    del logits
                    first = time.monotonic() - t0
                    times = time_ms(lambda ids=ids, m=model: m(ids), args, gpu)
                    rows.append({"impl": mode, "shape": shape, "times_ms": times,
                                 "first_call_s": first})
                    job.log(f"{mode} N={n} {shape}: median {np.median(times):.3f} ms (first "
                            f"call {first:.1f} s)")
        del model
        gc.collect()
        if args.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        return {"rows": rows}

    def close(self) -> None:
        """Destroy the process groups."""
        self.dist.destroy_process_group()


# -- main -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run every phase; rank 0 prints the report and writes the JSON and the plot."""
    args = parse_args(argv)
    job = Job(args)
    sizes = ([int(v) for v in args.sizes.split(",")] if args.sizes else
             [k for k in (1, 2, 4, 8, 16) if k <= job.size])
    if any(k < 1 or k > job.size for k in sizes):
        job.log(f"--sizes {sizes}: each N must be in [1, {job.size}] (the mpirun -n)")
        return 2
    cfg = model_config(args)
    report: dict[str, Any] = {
        "title": f"Llama hidden {cfg.hidden}, {cfg.layers} layers, {cfg.heads}/{cfg.kv_heads} "
                 f"heads, MLP {cfg.mlp}, {cfg.dtype}; {args.device}, {args.backend}",
        "config": {k: getattr(cfg, k) for k in ("vocab", "hidden", "layers", "heads",
                                                "kv_heads", "mlp", "max_seq", "dtype")},
        "args": {k: v for k, v in vars(args).items() if k != "shape_list"},
        "world_size": job.size, "sizes": sizes, "shapes": [f"{b}x{s}" for b, s in
                                                           args.shape_list],
        "results": [], "checks": [], "plans": {}, "targets": [], "phases": job.phases,
        "notes": [], "complete": False,
    }
    keep: dict[tuple[str, int, str], np.ndarray] = {}
    workdir = None
    try:
        with job.phase("setup", 120):
            if args.device == "cuda":
                from launch.bootstrap import bind_device  # noqa: PLC0415

                bind_device(job.info)
                import cupy  # noqa: PLC0415

                report["device"] = cupy.cuda.runtime.getDeviceProperties(
                    cupy.cuda.Device().id)["name"].decode()
            workdir = args.workdir or (tempfile.mkdtemp(prefix="dist_rt_tp_")
                                       if job.rank == 0 else None)
            workdir = job.world.broadcast_object(workdir, root=0)
            os.makedirs(workdir, exist_ok=True)
        with job.phase("generate", 300):
            path = generate(cfg, workdir, job) if job.rank == 0 else None
            path = job.world.broadcast_object(path, root=0)
        with job.phase("parse", 120):
            import dist_rt  # noqa: PLC0415

            network = dist_rt.parse_onnx(path)
            job.log(f"parse: {len(network.layers)} layers, "
                    f"{network.weight_bytes() / 2**30:.2f} GiB weights (memory-mapped)")
        for n in sizes:
            with job.phase(f"dist_rt N={n}"):
                mine = dist_rt_pass(job, n, network, cfg, keep)
                gathered = job.world.all_gather_object(mine.get("rows"))
                job.world.barrier()
            if job.rank == 0:
                report["plans"][str(n)] = mine.get("plan", {})
                collect(report, "dist_rt", n, gathered, args)
                for b, s in args.shape_list:
                    shape = f"{b}x{s}"
                    if n > 1 and ("dist_rt", 1, shape) in keep:
                        report["checks"].append({"what": f"dist_rt N={n} vs dist_rt N=1 {shape}",
                                                 **check(keep[("dist_rt", n, shape)],
                                                         keep[("dist_rt", 1, shape)], args.tol)})
                write_json(report, args.json)
        if not args.skip_torch:
            with job.phase("torch init", 120):
                side = TorchSide(job)
                report["torch"] = side.torch.__version__
            for n in sizes:
                compile_ok = not args.no_compile and job.left() > args.compile_reserve
                compile_ok = job.world.broadcast_object(compile_ok, root=0)
                if not compile_ok and not args.no_compile and job.rank == 0:
                    report["notes"].append(f"torch.compile skipped at N={n}: under "
                                           f"{args.compile_reserve:.0f} s left")
                with job.phase(f"torch N={n}"):
                    mine = side.run(n, network, cfg, compile_ok, keep)
                    gathered = job.world.all_gather_object(mine.get("rows"))
                    job.world.barrier()
                if job.rank == 0:
                    for impl in ("torch_eager", "torch_compile"):
                        rows = [None if g is None else [r for r in g if r["impl"] == impl]
                                for g in gathered]
                        collect(report, impl, n, rows, args)
                    for impl in ("torch_eager", "torch_compile"):
                        for b, s in args.shape_list:
                            shape = f"{b}x{s}"
                            if (impl, n, shape) in keep and ("dist_rt", n, shape) in keep:
                                report["checks"].append({
                                    "what": f"dist_rt N={n} vs {impl} N={n} {shape}",
                                    **check(keep[("dist_rt", n, shape)], keep[(impl, n, shape)],
                                            args.tol)})
                    write_json(report, args.json)
            side.close()
        else:
            report["notes"].append("torch skipped (--skip-torch)")
        if job.rank == 0:
            summarize(report["results"])
            report["targets"] = targets(report["results"])
            report["complete"] = True
            plot_path = args.plot or os.path.splitext(args.json)[0] + ".png"
            report["notes"].append(plot(report, plot_path))
            write_json(report, args.json)
            print_report(report)
            job.log(f"wrote {args.json}")
        job.world.barrier()
        with job.phase("teardown", 60):
            close_deferred(job)
            job.world.barrier()
    except Exception as exc:
        # Peers may be waiting in a collective: print why, then end every rank now.
        traceback.print_exc()
        job.world.abort(f"rank {job.rank}/{job.size}: {type(exc).__name__}: {exc}")
    finally:
        if job.rank == 0 and workdir and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    job.world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m collectives.bench``: nccl-tests-style timing and checking of the eight collectives.

For a message of ``S`` bytes over ``n`` ranks, as nccl-tests defines them::

    op              input per rank   algbw = S / t   busbw = algbw * factor
    all_reduce      S                                2 (n - 1) / n
    all_gather      S / n  (out S)                   (n - 1) / n
    reduce_scatter  S      (out S/n)                 (n - 1) / n
    all_to_all      S                                (n - 1) / n
    gather          S / n  (root S)                  (n - 1) / n
    scatter         S      (out S/n)                 (n - 1) / n
    broadcast       S                                1
    reduce          S                                1

Time is the mean over ``--iters`` back-to-back calls after ``--warmup`` (the slowest rank's
mean is reported). Every size is checked on fresh random data: small integers (so sums,
products, max and min are exact in every dtype) drawn from a per-run seed; each rank rebuilds
every rank's input from the seed and compares, reporting the max abs error (``avg`` may round).
With ``--graph`` (NCCL) the ``--iters`` calls are captured into one CUDA graph and the replay
is timed, which removes Python's launch overhead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from collectives.communicator import COLLECTIVES, REDUCE_OPS
from collectives.factory import create_communicator
from dist_rt.errors import DistRtError

BUSBW = {"all_reduce": lambda n: 2 * (n - 1) / n, "broadcast": lambda n: 1.0,
         "reduce": lambda n: 1.0}
GATHERS = ("all_gather", "gather")
ROOTED = ("broadcast", "reduce", "gather", "scatter")
REDUCING = ("all_reduce", "reduce", "reduce_scatter")


def parse_size(text: str) -> int:
    """Parse ``8``, ``64K``, ``256M``, ``1G`` (powers of 1024) into bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    mult = units.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if mult > 1 else text) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not like 8, 64K, 256M, 1G") from None


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes  # noqa: PLC0415 - only for bf16

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _Data:
    """Fresh inputs: rank r's input is reproducible anywhere from (seed, size, r)."""

    def __init__(self, xp: Any, seed: int, dtype: np.dtype):
        self.xp, self.seed, self.dtype = xp, seed, dtype

    def make(self, rank: int, count: int, salt: int) -> Any:
        lo = 0 if self.dtype.kind == "u" else -3
        if self.xp is np:
            rng = np.random.default_rng([self.seed, salt, rank])
            return rng.integers(lo, 4, count, dtype=np.int8).astype(self.dtype)
        rs = self.xp.random.RandomState(self.seed * 7919 + salt * 131 + rank)
        return rs.randint(lo, 4, size=count, dtype=np.int32).astype(self.dtype)


def _reduce(xp: Any, arrays: list[Any], op: str) -> Any:
    acc = arrays[0].astype(np.float64)
    for a in arrays[1:]:
        b = a.astype(np.float64)
        acc = {"sum": acc + b, "avg": acc + b, "prod": acc * b, "max": xp.maximum(acc, b),
               "min": xp.minimum(acc, b)}[op]
    if op == "avg":
        acc = xp.trunc(acc / len(arrays)) if arrays[0].dtype.kind in "iu" else acc / len(arrays)
    return acc


def _max_err(xp: Any, got: Any, want: Any) -> float:
    if got.shape != want.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    return float(xp.max(xp.abs(got.astype(np.float64) - want.astype(np.float64))))


def expected_error(comm: Any, xp: Any, data: _Data, name: str, out: Any, count_in: int,
                   op: str, salt: int) -> float:
    """Max abs error of this rank's ``out`` against the semantics table (root = 0)."""
    n, r = comm.size, comm.rank
    xs = lambda j: data.make(j, count_in, salt)  # noqa: E731 - small local helper
    if name in ("all_reduce", "reduce"):
        if name == "reduce" and r != 0:
            return _max_err(xp, out, xs(r))
        return _max_err(xp, out, _reduce(xp, [xs(j) for j in range(n)], op))
    if name == "broadcast":
        return _max_err(xp, out, xs(0))
    if name in GATHERS:
        if name == "gather" and r != 0:
            return _max_err(xp, out, xs(r))
        return max(_max_err(xp, out[j * count_in:(j + 1) * count_in], xs(j)) for j in range(n))
    chunk = count_in // n
    part = slice(r * chunk, (r + 1) * chunk)
    if name == "reduce_scatter":
        return _max_err(xp, out, _reduce(xp, [xs(j)[part] for j in range(n)], op))
    if name == "scatter":
        return _max_err(xp, out, xs(0)[part])
    return max(_max_err(xp, out[j * chunk:(j + 1) * chunk], xs(j)[part]) for j in range(n))


def _invoke(comm: Any, name: str, x: Any, op: str) -> Any:
    if name in REDUCING and name != "reduce":
        return getattr(comm, name)(x, op=op)
    if name == "reduce":
        return comm.reduce(x, op=op, root=0)
    if name in ROOTED:
        return getattr(comm, name)(x, root=0)
    return getattr(comm, name)(x)


def _time(comm: Any, xp: Any, name: str, x: Any, op: str, iters: int, warmup: int,
          graph: bool) -> tuple[float, Any]:
    """Mean seconds per call on this rank, and the last output."""
    out = None
    for _ in range(warmup):
        out = _invoke(comm, name, x, op)
    if xp is np:
        comm.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            out = _invoke(comm, name, x, op)
        return (time.perf_counter() - t0) / iters, out
    stream = xp.cuda.get_current_stream()
    if graph:
        # Each output is dropped before the next call, so the memory pool hands the same
        # block back and nothing is cudaMalloc'ed during capture; the last output is kept.
        stream.begin_capture()
        for _ in range(iters):
            out = None
            out = _invoke(comm, name, x, op)
        g = stream.end_capture()
        g.launch(stream)  # warm replay
    comm.barrier()
    start, end = xp.cuda.Event(), xp.cuda.Event()
    start.record(stream)
    if graph:
        g.launch(stream)
    else:
        for _ in range(iters):
            out = _invoke(comm, name, x, op)
    end.record(stream)
    end.synchronize()
    return xp.cuda.get_elapsed_time(start, end) / 1e3 / iters, out


def sizes(min_bytes: int, max_bytes: int, factor: int) -> list[int]:
    """Message sizes from ``min_bytes`` to ``max_bytes`` multiplying by ``factor``."""
    out, s = [], max(min_bytes, 1)
    while s <= max_bytes:
        out.append(s)
        s *= factor
    return out


def run(args: argparse.Namespace) -> tuple[list[dict], int]:
    """Run the sweep; returns (records on rank 0, number of failed checks)."""
    comm = create_communicator(args.backend)
    if args.backend == "nccl":
        import cupy as xp  # noqa: PLC0415 - device arrays only for NCCL

        # A non-blocking stream of our own: the legacy default stream cannot be captured.
        stream = xp.cuda.Stream(non_blocking=True)
        stream.use()
    else:
        xp = np
    dtype = _dtype(args.dtype)
    n, ops = comm.size, COLLECTIVES if args.op == "all" else (args.op,)
    seed = comm.broadcast_object(int(np.random.SeedSequence().entropy % 2**31))
    data, tol = _Data(xp, seed, dtype), (1e-2 if args.reduce_op == "avg" else 0.0)
    records, failed = [], 0
    if comm.rank == 0:
        print(f"# collectives.bench backend={args.backend} ranks={n} dtype={dtype.name} "
              f"iters={args.iters} warmup={args.warmup} graph={args.graph}")
        if hasattr(comm, "nvlink_status"):  # NCCL: which path small all_reduces take
            print(f"# {comm.nvlink_status}")
        print(f"# {'op':<14} {'size(B)':>12} {'count':>12} {'type':>8} {'redop':>5} "
              f"{'root':>4} {'time(us)':>10} {'algbw':>8} {'busbw':>8} {'maxerr':>8}")
    for name in ops:
        for salt, size in enumerate(sizes(args.min_bytes, args.max_bytes, args.step_factor)):
            count = size // dtype.itemsize  # elements of the S-byte message
            if name in GATHERS or name in ("reduce_scatter", "all_to_all", "scatter"):
                count = count // n * n  # these split the message into n equal chunks
            if count == 0:
                continue
            count_in = count // n if name in GATHERS else count
            x = data.make(comm.rank, count_in, salt)
            secs, out = _time(comm, xp, name, x, args.reduce_op, args.iters, args.warmup,
                              args.graph)
            err = expected_error(comm, xp, data, name, out, count_in, args.reduce_op, salt)
            secs = max(comm.all_gather_object(secs))
            err = max(comm.all_gather_object(err))
            nbytes = count * dtype.itemsize
            algbw = nbytes / secs / 1e9
            busbw = algbw * BUSBW.get(name, lambda k: (k - 1) / k)(n)
            bad = not err <= tol
            failed += bad
            rec = {"op": name, "size": nbytes, "count": count, "type": dtype.name,
                   "redop": args.reduce_op if name in REDUCING else "none",
                   "root": 0 if name in ROOTED else -1, "time_us": secs * 1e6,
                   "algbw_GBps": algbw, "busbw_GBps": busbw, "max_error": err}
            records.append(rec)
            if comm.rank == 0:
                print(f"  {name:<14} {nbytes:>12} {count:>12} {dtype.name:>8} "
                      f"{rec['redop']:>5} {rec['root']:>4} {rec['time_us']:>10.2f} "
                      f"{algbw:>8.2f} {busbw:>8.2f} {err:>8.2g}{'  WRONG' if bad else ''}",
                      flush=True)
            del x, out
    if comm.rank == 0:
        bws = [r["busbw_GBps"] for r in records]
        print(f"# checks failed: {failed}   avg bus bandwidth: "
              f"{sum(bws) / max(len(bws), 1):.3f} GB/s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"backend": args.backend, "ranks": n, "dtype": dtype.name,
                           "graph": args.graph, "records": records}, f, indent=1)
    comm.close()
    return records, failed


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit status 1 when any result was wrong or a rank failed.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    p = argparse.ArgumentParser(prog="python -m collectives.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("mpi", "nccl"), default="mpi")
    p.add_argument("--op", choices=("all",) + COLLECTIVES, default="all")
    p.add_argument("--reduce-op", choices=REDUCE_OPS, default="sum")
    p.add_argument("--min-bytes", type=parse_size, default=8)
    p.add_argument("--max-bytes", type=parse_size, default=None,
                   help="default 1M for mpi, 128M for nccl")
    p.add_argument("--step-factor", type=int, default=2)
    p.add_argument("--dtype", default="float32",
                   choices=("float32", "float16", "bfloat16", "float64", "int32", "int64",
                            "int8", "uint8"))
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--graph", action="store_true", help="time CUDA-graph replays (nccl)")
    p.add_argument("--json", default=None, help="write the records to this file (rank 0)")
    args = p.parse_args(argv)
    if args.max_bytes is None:
        args.max_bytes = (128 << 20) if args.backend == "nccl" else (1 << 20)
    if args.graph and args.backend != "nccl":
        p.error("--graph needs --backend nccl")
    if args.step_factor < 2 or args.iters < 1 or args.warmup < 0:
        p.error("--step-factor must be >= 2, --iters >= 1, --warmup >= 0")
    try:
        _, failed = run(args)
    except DistRtError as exc:
        print(f"collectives.bench: error: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Worker run under ``mpiexec -n N``: every collective x reduce op x dtype x axis x group.

Each rank draws its input from a seed that depends on (base seed, case, rank), so every
rank can rebuild every other rank's input and compute the NumPy reference locally. The base
seed is fresh per run (broadcast from rank 0). Prints one ``SUMMARY`` line per rank and exits
1 when any case failed.

Modes (argv[1]): ``matrix`` (default), ``die`` (rank 1 SIGKILLs itself inside a loop of
all_reduces), ``stall`` (rank 1 never enters the collective; run with
DIST_RT_COLLECTIVE_TIMEOUT set).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback

import ml_dtypes
import numpy as np

from collectives import create_communicator
from dist_rt.errors import CommunicatorError

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int32, np.int64, np.int8,
          np.uint8]
OPS = ["sum", "prod", "max", "min", "avg"]
TOL = {"float16": 2e-2, "bfloat16": 5e-2, "float32": 1e-5, "float64": 1e-12}


def make(seed: int, case: int, rank: int, shape: tuple, dtype) -> np.ndarray:
    """Input of ``rank`` for ``case``: small integers or floats in [-1.5, 1.5]."""
    rng = np.random.default_rng([seed, case, rank])
    dt = np.dtype(dtype)
    if dt.kind == "u":
        return rng.integers(0, 4, shape).astype(dt)
    if dt.kind == "i":
        return rng.integers(-3, 4, shape).astype(dt)
    return rng.uniform(-1.5, 1.5, shape).astype(dt)


def reduce_ref(xs: list[np.ndarray], op: str, dtype) -> np.ndarray:
    """float64 reference of reducing ``xs``, cast to ``dtype`` (avg on ints truncates)."""
    stack = np.stack([x.astype(np.float64) for x in xs])
    n = len(xs)
    fn = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "avg": np.sum}[op]
    y = fn(stack, axis=0)
    if op == "avg":
        y = np.trunc(y / n) if np.dtype(dtype).kind in "iu" else y / n
    return y.astype(dtype)


def split(x: np.ndarray, n: int, axis: int) -> list[np.ndarray]:
    return np.split(x, n, axis=axis)


def reference(name, xs, *, op, root, axis, g) -> np.ndarray:
    """What group rank ``g`` must receive, from the group's inputs ``xs`` (semantics table)."""
    n, dtype = len(xs), xs[0].dtype
    if name == "all_reduce":
        return reduce_ref(xs, op, dtype)
    if name == "reduce":
        return reduce_ref(xs, op, dtype) if g == root else xs[g]
    if name == "broadcast":
        return xs[root]
    if name == "all_gather":
        return np.concatenate(xs, axis=axis)
    if name == "gather":
        return np.concatenate(xs, axis=axis) if g == root else xs[g]
    if name == "reduce_scatter":
        return split(reduce_ref(xs, op, dtype), n, axis)[g]
    if name == "scatter":
        return split(xs[root], n, axis)[g]
    return np.concatenate([split(x, n, axis)[g] for x in xs], axis=axis)  # all_to_all


def close(got: np.ndarray, want: np.ndarray, exact: bool) -> bool:
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if exact or want.dtype.kind in "iu":
        return got.tobytes() == want.tobytes()
    tol = TOL[want.dtype.name]
    return np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


def groups_for(n: int) -> list[list[int] | None]:
    out: list[list[int] | None] = [None, list(range(n))[::-1]]
    if n >= 3:
        out.append([n - 1, 0])
    if n >= 4:
        out.append([2, 0, 3])
    return out


def run_matrix(comm) -> tuple[int, list[str]]:
    seed = comm.broadcast_object(int(np.random.SeedSequence().entropy % 2**31))
    cases, fails = 0, []
    for gi, group in enumerate(groups_for(comm.size)):
        case = gi * 100000  # same case numbers (seeds) on every member of the group
        members = group or list(range(comm.size))
        if comm.rank not in members:
            continue
        n, g = len(members), members.index(comm.rank)
        for name in ("all_reduce", "all_gather", "broadcast", "reduce", "reduce_scatter",
                     "all_to_all", "gather", "scatter"):
            reduces = name in ("all_reduce", "reduce", "reduce_scatter")
            splits = name in ("reduce_scatter", "all_to_all", "scatter")
            has_axis = name not in ("all_reduce", "broadcast", "reduce")
            # At 4+ ranks (oversubscribed CI cores) sub-groups get three dtypes and each
            # (dtype, op) one rotating axis: every axis, dtype and op is still covered.
            sparse = comm.size >= 4
            dtypes = DTYPES if not (sparse and group) else [np.float32, ml_dtypes.bfloat16,
                                                            np.int8]
            for dtype in dtypes:
                for op in OPS if reduces else ["sum"]:
                    axes = (0, 1, 2, -1) if has_axis else (0,)
                    if sparse and has_axis:
                        axes = (axes[case % 4],)
                    for axis in axes:
                        root = (case % n) if name in ("broadcast", "reduce", "gather",
                                                      "scatter") else 0
                        shape = [3, 5, 2]
                        shape[axis] = 2 * n if splits else shape[axis] + comm.size
                        case += 1
                        xs = [make(seed, case, r, tuple(shape), dtype) for r in members]
                        kw = {"group": group}
                        if reduces:
                            kw["op"] = op
                        if has_axis:
                            kw["axis"] = axis
                        if name in ("broadcast", "reduce", "gather", "scatter"):
                            kw["root"] = root
                        label = (f"{name} op={op} dtype={np.dtype(dtype).name} axis={axis} "
                                 f"group={group} root={root}")
                        try:
                            got = getattr(comm, name)(xs[g].copy(), **kw)
                            want = reference(name, xs, op=op, root=root,
                                             axis=axis % 3, g=g)
                            cases += 1
                            if not close(got, want, exact=not reduces):
                                fails.append(f"{label}: wrong result")
                        except Exception as exc:  # noqa: BLE001 - report every failure
                            fails.append(f"{label}: {type(exc).__name__}: {exc}")
    cases += run_misc(comm, seed, fails)
    return cases, fails


def expect_error(fails: list[str], label: str, fn, *args, **kw) -> None:
    try:
        fn(*args, **kw)
    except CommunicatorError as exc:
        if f"rank {fn.__self__.rank}/" not in str(exc):
            fails.append(f"{label}: message does not name the rank: {exc}")
        return
    fails.append(f"{label}: no CommunicatorError")


def run_misc(comm, seed: int, fails: list[str]) -> int:
    """send/recv ring, barrier, object messages, 0-d arrays, and bad input."""
    n, r = comm.size, comm.rank
    x = make(seed, 10**6, r, (7, 3), np.float32)
    if n > 1:
        nxt, prv = (r + 1) % n, (r - 1) % n
        if r % 2 == 0:
            comm.send(x, nxt)
            got = comm.recv(x, prv)
        else:
            got = comm.recv(x, prv)
            comm.send(x, nxt)
        if not np.array_equal(got, make(seed, 10**6, prv, (7, 3), np.float32)):
            fails.append("send/recv ring: wrong data")
    comm.barrier()
    if comm.all_gather_object({"r": r}) != [{"r": i} for i in range(n)]:
        fails.append("all_gather_object: wrong list")
    if comm.broadcast_object("hi" if r == n - 1 else None, root=n - 1) != "hi":
        fails.append("broadcast_object: wrong object")
    s = comm.all_reduce(np.array(float(r + 1)), op="sum")
    if s.shape != () or float(s) != n * (n + 1) / 2:
        fails.append(f"0-d all_reduce: got {s!r}")
    expect_error(fails, "bad op", comm.all_reduce, x, op="mean")
    expect_error(fails, "bad axis", comm.all_gather, x, axis=5)
    expect_error(fails, "bad root", comm.broadcast, x, root=n)
    expect_error(fails, "bad group", comm.all_reduce, x, group=[0, 0])
    expect_error(fails, "not a numpy array", comm.all_reduce, [1.0, 2.0])
    expect_error(fails, "bool reduce", comm.all_reduce, np.ones(3, bool))
    if n > 1:
        expect_error(fails, "uneven reduce_scatter", comm.reduce_scatter, np.ones((n + 1, 2)))
        expect_error(fails, "uneven scatter", comm.scatter, np.ones((2, n * 3 + 1)), axis=1)
        expect_error(fails, "uneven all_to_all", comm.all_to_all, np.ones((n * 3 + 1,)))
        expect_error(fails, "send to self", comm.send, x, r)
        if n > 2:
            expect_error(fails, "not in group", comm.all_reduce, x,
                         group=[g for g in range(n) if g != r])
    comm.barrier()
    return 14


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "matrix"
    comm = create_communicator("mpi")
    if mode == "die":
        x = np.ones(1 << 14, np.float32)
        for i in range(100000):
            if comm.rank == 1 and i == 200:
                os.kill(os.getpid(), signal.SIGKILL)
            comm.all_reduce(x)
        return 0
    if mode == "stall":
        x = np.ones(16, np.float32)
        comm.all_reduce(x)
        if comm.rank == 1:
            time.sleep(120)
        comm.all_reduce(x)
        return 0
    t0 = time.perf_counter()
    try:
        cases, fails = run_matrix(comm)
    except Exception:  # noqa: BLE001 - print the traceback, then end every rank
        traceback.print_exc()
        comm.abort("mpi_worker crashed")
        return 1
    print(f"SUMMARY rank {comm.rank}/{comm.size} cases={cases} failures={len(fails)} "
          f"seconds={time.perf_counter() - t0:.2f}", flush=True)
    for f in fails[:20]:
        print(f"FAIL rank {comm.rank}: {f}", flush=True)
    comm.close()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

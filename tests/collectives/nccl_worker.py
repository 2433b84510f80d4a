"""GPU worker (one process per GPU, started by ``python -m launch -n N``): NCCL vs NumPy.

Modes (argv[1]): ``matrix`` (collective x op x dtype x axis x group, plus CUDA-graph capture
and replay, plus bad input), ``stall`` (rank 1 never joins; the watchdog must abort).
Prints ``SUMMARY rank r/n cases=.. failures=..``.
"""

from __future__ import annotations

import sys
import time

import cupy as cp
import ml_dtypes
import numpy as np
from mpi_worker import close, groups_for, make, reference

from collectives import create_communicator
from dist_rt.errors import CommunicatorError

NAMES = ("all_reduce", "all_gather", "broadcast", "reduce", "reduce_scatter", "all_to_all",
         "gather", "scatter")


def dtypes() -> list:
    out = [np.float32, np.float16, np.float64, np.int32, np.int8, np.uint8]
    try:  # CuPy may not know ml_dtypes' bfloat16; test it wherever it does
        cp.asarray(np.zeros(2, ml_dtypes.bfloat16)) + 0
        out.append(ml_dtypes.bfloat16)
    except Exception:  # noqa: BLE001 - any failure means "no bf16 arrays in this CuPy"
        print("NOTE bfloat16 cupy arrays unsupported here; bf16 not tested", flush=True)
    return out


def run_matrix(comm) -> tuple[int, list[str]]:
    seed = comm.broadcast_object(int(np.random.SeedSequence().entropy % 2**31))
    cases, fails = 0, []
    for gi, group in enumerate(groups_for(comm.size)):
        members = group or list(range(comm.size))
        if comm.rank not in members:
            continue
        n, g, case = len(members), members.index(comm.rank), gi * 100000
        for name in NAMES:
            reduces = name in ("all_reduce", "reduce", "reduce_scatter")
            splits = name in ("reduce_scatter", "all_to_all", "scatter")
            has_axis = name not in ("all_reduce", "broadcast", "reduce")
            for dtype in dtypes():
                for op in ("sum", "prod", "max", "min", "avg") if reduces else ["sum"]:
                    for axis in (0, 1, -1) if has_axis else (0,):
                        case += 1
                        root = case % n
                        shape = [3, 5, 2]
                        shape[axis] = 2 * n if splits else shape[axis] + 1
                        xs = [make(seed, case, r, tuple(shape), dtype) for r in members]
                        kw = {"group": group}
                        kw.update({"op": op} if reduces else {})
                        kw.update({"axis": axis} if has_axis else {})
                        kw.update({"root": root} if name in ("broadcast", "reduce", "gather",
                                                              "scatter") else {})
                        label = f"{name} op={op} dtype={np.dtype(dtype).name} axis={axis} " \
                                f"group={group} root={root}"
                        try:
                            got = cp.asnumpy(getattr(comm, name)(cp.asarray(xs[g]), **kw))
                            want = reference(name, xs, op=op, root=root, axis=axis % 3, g=g)
                            cases += 1
                            if not close(got, want, exact=not reduces):
                                fails.append(f"{label}: wrong result")
                        except Exception as exc:  # noqa: BLE001 - report every failure
                            fails.append(f"{label}: {type(exc).__name__}: {exc}")
    return cases + run_graph(comm, seed, fails) + run_bad(comm, fails), fails


def run_graph(comm, seed: int, fails: list[str]) -> int:
    """Capture four collectives into a CUDA graph; replay on fresh data; compare."""
    n, stream = comm.size, cp.cuda.Stream(non_blocking=True)
    shape = (4, 2 * n, 8)
    with stream:
        x = cp.asarray(make(seed, 7, comm.rank, shape, np.float32))
        calls = [("all_reduce", {"op": "sum"}), ("all_gather", {"axis": 1}),
                 ("all_to_all", {"axis": 1}), ("reduce_scatter", {"op": "max", "axis": 1})]
        for name, kw in calls:  # warm-up: caches comms, fills the memory pool
            getattr(comm, name)(x, **kw)
        stream.synchronize()
        stream.begin_capture()
        outs = [getattr(comm, name)(x, **kw) for name, kw in calls]
        graph = stream.end_capture()
        for trial in range(2):
            xs = [make(seed, 1000 + trial, r, shape, np.float32) for r in range(n)]
            x[...] = cp.asarray(xs[comm.rank])
            graph.launch(stream)
            stream.synchronize()
            for (name, kw), out in zip(calls, outs, strict=True):
                want = reference(name, xs, op=kw.get("op", "sum"), root=0,
                                 axis=kw.get("axis", 0), g=comm.rank)
                if not close(cp.asnumpy(out), want, exact=name != "all_reduce"):
                    fails.append(f"graph replay {trial}: {name} wrong")
    return 8


def run_bad(comm, fails: list[str]) -> int:
    for label, fn in [("numpy input", lambda: comm.all_reduce(np.ones(4, np.float32))),
                      ("bool reduce", lambda: comm.all_reduce(cp.ones(4, bool))),
                      ("uneven", lambda: comm.reduce_scatter(cp.ones(comm.size * 2 + 1)))]:
        if label == "uneven" and comm.size == 1:
            continue
        try:
            fn()
            fails.append(f"{label}: no error")
        except CommunicatorError as exc:
            if f"rank {comm.rank}/{comm.size}" not in str(exc):
                fails.append(f"{label}: message lacks the rank: {exc}")
    return 3


def main() -> int:
    comm = create_communicator("nccl")
    if sys.argv[1] == "stall":
        x = cp.ones(1024, cp.float32)
        comm.all_reduce(x)
        cp.cuda.get_current_stream().synchronize()
        if comm.rank == 1:
            time.sleep(120)
        comm.all_reduce(x)
        cp.cuda.get_current_stream().synchronize()
        return 0
    t0 = time.perf_counter()
    cases, fails = run_matrix(comm)
    print(f"SUMMARY rank {comm.rank}/{comm.size} cases={cases} failures={len(fails)} "
          f"seconds={time.perf_counter() - t0:.1f}", flush=True)
    for f in fails[:30]:
        print(f"FAIL rank {comm.rank}: {f}", flush=True)
    comm.barrier()
    comm.close()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

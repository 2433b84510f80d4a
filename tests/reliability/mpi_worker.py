"""Worker run under ``mpiexec -n 2``: mismatched engines and dead ranks (issue 8).

Usage: ``python tests/reliability/mpi_worker.py MODE [TMPDIR]``. Every rank builds a small
tensor-parallel MLP (``y = all_reduce(x @ W_r)``), then MODE damages one thing:

- ``world``: engines built for 3 ranks attached to a 2-rank communicator;
- ``swap``: rank 1 loads rank 0's plan file without saying which rank it is;
- ``swap_checked``: rank 1 loads rank 0's plan file with ``Engine.load(rank=, world_size=)``;
- ``mixed``: rank 1's engine comes from another build (other weights, other plan hash);
- ``die_build``: rank 1 SIGKILLs itself in the middle of its build;
- ``die_execute``: rank 1 SIGKILLs itself after 20 collective executes;
- ``ok``: nothing is wrong (the control case).

A ``DistRtError`` prints ``dist_rt: error: ...``; errors every rank raises (set_communicator
checks) exit 1, an error of one rank aborts the job like ``python -m dist_rt.run``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from collectives import create_communicator
from dist_rt import Builder, BuilderConfig, Engine
from dist_rt.errors import DistRtError
from dist_rt.network import Network


def tp_network(rank: int, world: int, seed: int = 0, plan_hash: str = "tp-mlp") -> Network:
    """Row-parallel linear: rank r holds rows r of W; the partial sums are all-reduced."""
    w = np.random.default_rng(seed).standard_normal((8 * world, 4)).astype(np.float32)
    net = Network("tp_mlp")
    x = net.add_input("x", np.float32, (2, 8))
    part = net.add_matmul(x, net.add_constant("w", w[8 * rank:8 * (rank + 1)]))
    net.mark_output(net.add_collective(part, "all_reduce", nb_ranks=world))
    net.metadata.update(rank=rank, world_size=world, plan_hash=f"{plan_hash}-{seed}")
    return net


def build(rank: int, world: int, seed: int = 0, progress=None) -> Engine:
    """This rank's engine."""
    return Builder(BuilderConfig(device="cpu"), progress=progress).build(
        tp_network(rank, world, seed))


def main() -> int:
    mode = sys.argv[1]
    tmp = sys.argv[2] if len(sys.argv) > 2 else "."
    comm = create_communicator("mpi")
    rank, world = comm.rank, comm.size
    collective_check = mode in ("world", "swap", "mixed")
    try:
        if mode == "world":
            engine = build(rank, 3)
        elif mode in ("swap", "swap_checked"):
            build(rank, world).save(os.path.join(tmp, f"engine.r{rank}.plan"))
            comm.barrier()
            src = os.path.join(tmp, "engine.r0.plan")
            mine = src if rank == 1 else os.path.join(tmp, f"engine.r{rank}.plan")
            kwargs = {"rank": rank, "world_size": world} if mode == "swap_checked" else {}
            engine = Engine.load(mine, **kwargs)
        elif mode == "mixed":
            engine = build(rank, world, seed=rank)
        elif mode == "die_build":
            def progress(line: str) -> None:
                if rank == 1 and "fold" in line:
                    os.kill(os.getpid(), signal.SIGKILL)
            engine = build(rank, world, progress=progress)
        else:
            engine = build(rank, world)
        x = np.ones((2, 8), np.float32)
        with engine.create_execution_context() as ctx:
            ctx.set_communicator(comm)
            for i in range(200 if mode == "die_execute" else 3):
                if mode == "die_execute" and rank == 1 and i == 20:
                    os.kill(os.getpid(), signal.SIGKILL)
                y = ctx.execute({"x": x})[engine.outputs[0][0]]
        want = np.ones((2, 8 * world), np.float32) @ np.random.default_rng(0).standard_normal(
            (8 * world, 4)).astype(np.float32)
        if not np.allclose(y, want, rtol=1e-5, atol=1e-5):
            print(f"dist_rt: error: rank {rank}: wrong answer", file=sys.stderr, flush=True)
            comm.abort("wrong answer")
        print(f"rank {rank}: OK", flush=True)
        comm.barrier()
        return 0
    except DistRtError as exc:
        print(f"dist_rt: error: {exc}", file=sys.stderr, flush=True)
        if not collective_check:
            comm.abort(str(exc))
        time.sleep(0.2)
        return 1


if __name__ == "__main__":
    sys.exit(main())

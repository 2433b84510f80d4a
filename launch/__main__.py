"""``python -m launch -n 4 CMD...``: start N ranks on this node without MPI.

Each child gets torchrun-style variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and no MPI/PMI/Slurm rank variables,
so ``launch.discover()`` reports ``source="torchrun"`` and the NCCL bootstrap uses the TCP
store. When one rank exits non-zero (or is killed), the others get SIGTERM, then SIGKILL
after ``--grace`` seconds, and the spawner exits with the failed rank's status: a dead rank
never leaves the others hanging.

    rank | LOCAL_RANK | GPU (one per local rank)
    0    | 0          | 0
    1    | 1          | 1
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

_FOREIGN = ("OMPI_COMM_WORLD_", "PMI_", "PMIX_", "MPI_LOCAL", "SLURM_PROCID", "SLURM_LOCALID",
            "SLURM_NTASKS")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(rank: int, n: int, port: int, base: dict[str, str]) -> dict[str, str]:
    """Environment of rank ``rank``: ``base`` minus launcher variables plus torchrun's.

    Args:
        rank: The child's rank.
        n: Number of ranks.
        port: ``MASTER_PORT``.
        base: The parent's environment.

    Returns:
        The child's environment.
    """
    env = {k: v for k, v in base.items() if not k.startswith(_FOREIGN)}
    env.update(RANK=str(rank), WORLD_SIZE=str(n), LOCAL_RANK=str(rank),
               LOCAL_WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return env


def spawn(n: int, cmd: list[str], grace: float = 5.0, port: int | None = None) -> int:
    """Run ``cmd`` as ``n`` ranks; return 0, or the first failing rank's exit status.

    Args:
        n: Number of ranks.
        cmd: The command line every rank runs.
        grace: Seconds between SIGTERM and SIGKILL when tearing down the others.
        port: ``MASTER_PORT`` (default: a free one).

    Returns:
        The exit status for the spawner (128 + signal for a rank killed by a signal).
    """
    port = port or free_port()
    procs = [subprocess.Popen(cmd, env=child_env(r, n, port, dict(os.environ)))
             for r in range(n)]
    status = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, code = failed[0]
                status = 128 - code if code < 0 else code
                sys.stderr.write(f"launch: rank {rank}/{n} exited with status {code}; "
                                 f"stopping the other ranks\n")
                break
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.05)
    except KeyboardInterrupt:
        status = 130
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return status


def main(argv: list[str] | None = None) -> int:
    """CLI entry point.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    p = argparse.ArgumentParser(prog="python -m launch",
                                description="Start N ranks of CMD on this node (no MPI).")
    p.add_argument("-n", "--nproc", type=int, required=True, help="number of ranks")
    p.add_argument("--master-port", type=int, default=None)
    p.add_argument("--grace", type=float, default=5.0)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command each rank runs")
    args = p.parse_args(argv)
    if args.nproc < 1:
        p.error(f"-n must be >= 1, got {args.nproc}")
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("no command given (python -m launch -n 4 python script.py ...)")
    return spawn(args.nproc, cmd, args.grace, args.master_port)


if __name__ == "__main__":
    sys.exit(main())

"""Launch real ``mpiexec`` jobs from tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mpiexec_path() -> str | None:
    """``mpiexec`` next to this Python (the mpich wheel's), else the one on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(local):
        return local
    return shutil.which("mpiexec")


def run_mpi(n: int, args: list[str], timeout: float = 120, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n n python ARGS...`` in the repo root and return the finished process.

    ``args`` are what follows ``python`` (e.g. ``["-m", "dist_rt.run", "--check"]``).
    Fails the test on timeout, or on a non-zero exit when ``check``.
    """
    exe = mpiexec_path()
    if exe is None:
        pytest.skip("mpiexec not found (pip install mpich)")
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    full_env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    full_env.update(env or {})
    cmd = [exe, "-n", str(n), sys.executable, *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s (hang?)\n"
                    f"stdout: {exc.stdout}\nstderr: {exc.stderr}")
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                    f"stderr:\n{proc.stderr}")
    return proc

"""A rank of ``mpiexec -n 2 python -m dist_rt.run`` killed mid-run: the job ends, named.

The CLI logs ``ranks  0=host:pid, 1=host:pid`` before anything else, so the launcher's
"PID 1234 ... KILLED" line says which rank died. The test reads that line, SIGKILLs rank 1
while it executes, and checks every process is gone within 60 s and the PID is reported.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from mpi_util import ROOT, mpiexec_path


def test_killed_rank_ends_job_and_is_named():
    exe = mpiexec_path()
    if exe is None:
        pytest.skip("mpiexec not found")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([exe, "-n", "2", sys.executable, "-m", "dist_rt.run",
                             "--iterations", "100000", "--warmup", "0"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        pids, started = None, False
        while time.monotonic() < deadline and not started:
            text = "".join(lines)
            match = re.search(r"ranks  0=\S+:(\d+), 1=\S+:(\d+)", text)
            if match:
                pids = int(match.group(1)), int(match.group(2))
            started = pids is not None and "built in" in text
            time.sleep(0.1)
        assert started, "".join(lines)
        time.sleep(0.5)  # let it enter the execute loop
        killed = time.monotonic()
        os.kill(pids[1], signal.SIGKILL)
        proc.wait(timeout=60)
        elapsed = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    out = "".join(lines)
    assert proc.returncode != 0, out
    assert elapsed < 60, out
    # The launcher names the dead process; the ranks line maps it to rank 1.
    assert str(pids[1]) in out.split("ranks  ", 1)[1].split("\n", 1)[1], out
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

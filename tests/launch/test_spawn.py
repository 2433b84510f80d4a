"""python -m launch: torchrun-style variables, the TCP store, and teardown on failure."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dist_rt.errors import CollectiveTimeoutError, LaunchError
from launch.__main__ import child_env
from launch.store import TcpStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "launch", "spawn_worker.py")


def spawn(args, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "launch", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_store_messages_over_spawner():
    proc = spawn(["-n", "3", sys.executable, WORKER, "store"])
    assert proc.returncode == 0, proc.stderr
    for r in range(3):
        assert f"STORE rank {r}/3 ok=True" in proc.stdout


def test_failing_rank_stops_the_others():
    t0 = time.monotonic()
    proc = spawn(["-n", "3", "--grace", "2", sys.executable, WORKER, "fail"])
    assert proc.returncode == 3
    assert "rank 1/3 exited with status 3" in proc.stderr
    assert time.monotonic() - t0 < 30  # the sleeping ranks were killed, not waited for


def test_no_command():
    proc = spawn(["-n", "2"])
    assert proc.returncode != 0 and "no command given" in proc.stderr


def test_child_env_drops_mpi_variables():
    env = child_env(2, 4, 1234, {"PMI_RANK": "0", "OMPI_COMM_WORLD_RANK": "0", "PATH": "/x"})
    assert env["RANK"] == "2" and env["LOCAL_WORLD_SIZE"] == "4" and env["MASTER_PORT"] == "1234"
    assert "PMI_RANK" not in env and "OMPI_COMM_WORLD_RANK" not in env and env["PATH"] == "/x"


class TestStore:
    def test_set_get_add_and_timeout(self):
        server = TcpStore("127.0.0.1", 0, is_server=True, timeout=5)
        client = TcpStore("127.0.0.1", server.port, is_server=False, timeout=5)
        client.set("k", {"a": [1, 2]})
        assert server.get("k") == {"a": [1, 2]}
        assert client.add("c", 2) == 2 and server.add("c", 3) == 5
        with pytest.raises(CollectiveTimeoutError, match="'missing' did not appear within 0.2 s"):
            client.get("missing", timeout=0.2)
        client.close()
        server.close()

    def test_unreachable(self):
        port = TcpStore("127.0.0.1", 0, is_server=True, timeout=1)
        dead = port.port
        port.close()
        with pytest.raises(LaunchError, match=f"cannot reach rank 0 at 127.0.0.1:{dead}"):
            TcpStore("127.0.0.1", dead, is_server=False, timeout=0.5)

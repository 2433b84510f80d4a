"""A tiny TCP key-value store for bootstrapping ranks without MPI (torchrun-style starts).

Rank 0 serves on ``MASTER_ADDR:MASTER_PORT``; every rank (rank 0 too) is a client. Requests
are one JSON object per line, answers too, so nothing is unpickled from the network::

    {"cmd": "set", "key": k, "value": v}   -> {"ok": true}
    {"cmd": "get", "key": k, "timeout": t} -> {"ok": true, "value": v}   (waits for k)
    {"cmd": "add", "key": k, "value": i}   -> {"ok": true, "value": new}  (atomic counter)

``StoreChannel`` builds the communicator's host control messages (``broadcast_object``,
``all_gather_object``) on top, numbering each call so repeated calls never read stale keys.
Values must be JSON-able; NumPy arrays are encoded as dtype, shape and base64 bytes.

Why not ``torch.distributed.TCPStore``: dist_rt must not depend on torch. Why not pickle:
any local user could connect to the port and have us unpickle arbitrary objects.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import socketserver
import sys
import threading
import time
from typing import Any

import numpy as np

from dist_rt.errors import CollectiveTimeoutError, LaunchError
from launch.discover import RankInfo

DEFAULT_TIMEOUT = 300.0


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        for line in self.rfile:
            req = json.loads(line)
            key = req.get("key")
            with server.cond:
                if req["cmd"] == "set":
                    server.data[key] = req["value"]
                    server.cond.notify_all()
                    ans: dict[str, Any] = {"ok": True}
                elif req["cmd"] == "add":
                    server.data[key] = int(server.data.get(key, 0)) + int(req["value"])
                    server.cond.notify_all()
                    ans = {"ok": True, "value": server.data[key]}
                else:  # get
                    found = server.cond.wait_for(lambda k=key: k in server.data,
                                                 req["timeout"])
                    ans = {"ok": found, "value": server.data.get(key)}
            self.wfile.write((json.dumps(ans) + "\n").encode())
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int]):
        super().__init__(addr, _Handler)
        self.data: dict[str, Any] = {}
        self.cond = threading.Condition()


class TcpStore:
    """Client of the key-value store; on ``is_server`` it also runs the server thread.

    Args:
        host: Address of rank 0 (``MASTER_ADDR``).
        port: Port (``MASTER_PORT``); 0 on the server picks a free one (see ``port``).
        is_server: True on rank 0.
        timeout: Seconds to wait for the server to come up and for each ``get``.
    """

    def __init__(self, host: str, port: int, is_server: bool,
                 timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self._server = None
        if is_server:
            try:
                self._server = _Server((host, port))
            except OSError as exc:
                raise LaunchError(f"TCP store: cannot listen on {host}:{port}: {exc}") from exc
            port = self._server.server_address[1]
            threading.Thread(target=self._server.serve_forever, daemon=True,
                             name="dist_rt-store").start()
        self.host, self.port = host, port
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection((host, port), timeout=5)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise LaunchError(f"TCP store: cannot reach rank 0 at {host}:{port} "
                                      f"within {timeout:g} s: {exc}") from exc
                time.sleep(0.1)
        self._sock.settimeout(None)
        self._file = self._sock.makefile("rwb")
        self._lock = threading.Lock()

    def _ask(self, req: dict[str, Any], wait: float) -> dict[str, Any]:
        with self._lock:
            self._sock.settimeout(wait + 10)
            try:
                self._file.write((json.dumps(req) + "\n").encode())
                self._file.flush()
                line = self._file.readline()
            except OSError as exc:
                raise LaunchError(f"TCP store at {self.host}:{self.port}: {req['cmd']} "
                                  f"{req['key']!r} failed: {exc}") from exc
            if not line:
                raise LaunchError(f"TCP store at {self.host}:{self.port}: server closed the "
                                  f"connection during {req['cmd']} {req['key']!r} (rank 0 died?)")
            return json.loads(line)

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-able ``value`` under ``key`` (wakes every waiting ``get``)."""
        self._ask({"cmd": "set", "key": key, "value": value}, 0)

    def get(self, key: str, timeout: float | None = None) -> Any:
        """Wait until ``key`` exists and return its value.

        Raises:
            CollectiveTimeoutError: The key did not appear within the timeout.
        """
        wait = self.timeout if timeout is None else timeout
        ans = self._ask({"cmd": "get", "key": key, "timeout": wait}, wait)
        if not ans["ok"]:
            raise CollectiveTimeoutError(f"TCP store: key {key!r} did not appear within "
                                         f"{wait:g} s (a rank is dead or stuck)")
        return ans["value"]

    def add(self, key: str, value: int = 1) -> int:
        """Atomically add ``value`` to the counter ``key``; returns the new value."""
        return int(self._ask({"cmd": "add", "key": key, "value": int(value)}, 0)["value"])

    def close(self) -> None:
        """Close the connection (and stop the server on rank 0)."""
        self._file.close()
        self._sock.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.dtype.str, "shape": list(obj.shape),
                "data": base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode()}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(o) for o in obj]}
    if isinstance(obj, list):
        return [_encode(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict) and "__ndarray__" in obj:
        raw = base64.b64decode(obj["data"])
        return np.frombuffer(raw, np.dtype(obj["__ndarray__"])).reshape(obj["shape"]).copy()
    if isinstance(obj, dict) and "__tuple__" in obj:
        return tuple(_decode(o) for o in obj["__tuple__"])
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(o) for o in obj]
    return obj


class StoreChannel:
    """Host control messages over a :class:`TcpStore` (the NCCL side channel without MPI).

    Every call is numbered per group; rank table for ``broadcast_object`` call 3, root 0::

        rank 0: set("bcast/all/3", obj)         ranks 1..n-1: get("bcast/all/3")

    Args:
        info: This process's place in the job.
        store: A connected store (default: from ``MASTER_ADDR``/``MASTER_PORT``).
    """

    def __init__(self, info: RankInfo, store: TcpStore | None = None):
        self.rank, self.size = info.rank, info.world_size
        if store is None:
            host = os.environ.get("MASTER_ADDR", "127.0.0.1")
            raw = os.environ.get("MASTER_PORT", "")
            if not raw.isdigit():
                raise LaunchError(f"rank {self.rank}/{self.size}: MASTER_PORT={raw!r} must be a "
                                  f"port number to bootstrap without MPI")
            store = TcpStore(host, int(raw), is_server=self.rank == 0)
        self.store = store
        self._seq: dict[str, int] = {}

    def _key(self, kind: str, group: list[int] | None) -> str:
        name = "all" if group is None else "-".join(map(str, group))
        seq = self._seq.get(kind + name, 0)
        self._seq[kind + name] = seq + 1
        return f"{kind}/{name}/{seq}"

    def broadcast_object(self, obj: Any, root: int = 0, group: list[int] | None = None) -> Any:
        """Every rank of ``group`` (default all) gets the object of group rank ``root``."""
        members = group if group is not None else list(range(self.size))
        key = self._key("bcast", group)
        if members[root] == self.rank:
            self.store.set(key, _encode(obj))
            return obj
        return _decode(self.store.get(key))

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank gets ``[obj_0, ..., obj_{size-1}]``."""
        key = self._key("gather", None)
        self.store.set(f"{key}/{self.rank}", _encode(obj))
        return [_decode(self.store.get(f"{key}/{r}")) for r in range(self.size)]

    def abort(self, reason: str = "", code: int = 1) -> None:
        """Print the reason and exit; the spawner (``python -m launch``) kills the others."""
        if reason:
            sys.stderr.write(f"dist_rt: abort: {reason}\n")
        sys.stderr.flush()
        os._exit(code)

    def close(self) -> None:
        """Close the store connection."""
        self.store.close()

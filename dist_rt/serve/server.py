"""``python -m dist_rt.serve [MODEL.onnx]``: KServe v2 over HTTP, tensor-parallel ranks behind.

Under ``mpiexec -n N`` every rank builds its shard of the engine (as ``dist_rt.run`` does).
Rank 0 runs a Starlette app under uvicorn on a second thread and the compute loop
(:class:`~dist_rt.serve.workers.Leader`) on the main thread, which is the one that talks MPI;
ranks != 0 wait for work messages. Threads rather than an asyncio-driven MPI: MPI calls block,
and a blocking all-reduce inside the event loop would freeze every connection.

Status codes: 400 for bad requests (malformed JSON, wrong names, shapes, datatypes, a body
over ``--max-body-bytes``), 404 for an unknown model, 503 when ``--max-queue`` requests wait
already or the server is stopping, 500 when execution failed on some rank; each with
``{"error": "..."}``. SIGTERM or SIGINT stop gracefully: no new connections, requests in
flight finish, rank 0 sends ``stop`` to the others, every rank exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dist_rt import __version__
from dist_rt import run as _cli
from dist_rt.errors import DistRtError, InputError
from dist_rt.serve import protocol
from dist_rt.serve.batcher import Batcher, Job, QueueFullError, batch_key, batch_symbol
from dist_rt.serve.metrics import Metrics


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The serve CLI's flags (model, build and the serving knobs)."""
    p = argparse.ArgumentParser(prog="python -m dist_rt.serve",
                                description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?", help="ONNX model (default: the embedded Llama decoder)")
    p.add_argument("--name", help="model name in URLs (default: the file's stem, or 'default')")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    p.add_argument("--plan", default="auto", metavar="{auto,replicate,FILE.json}",
                   help="sharding plan: search, replicate everything, or a hints file")
    p.add_argument("--load-engine", metavar="DIR", help="load one plan file per rank")
    p.add_argument("--timing-cache", metavar="FILE", help="tactic timing cache")
    p.add_argument("--max-batch", type=int, default=8, metavar="B",
                   help="most rows (dim 0) per engine execution; 1 disables batching")
    p.add_argument("--max-delay-ms", type=float, default=2.0, metavar="T",
                   help="how long a batch waits for more requests")
    p.add_argument("--max-queue", type=int, default=256, metavar="Q",
                   help="most queued requests; more get 503")
    p.add_argument("--max-body-bytes", type=int, default=64 << 20, metavar="N",
                   help="largest request body; larger get 400")
    args = p.parse_args(argv)
    if args.max_batch < 1 or args.max_queue < 1 or args.max_body_bytes < 1:
        p.error("--max-batch, --max-queue and --max-body-bytes must be >= 1")
    if args.max_delay_ms < 0:
        p.error("--max-delay-ms must be >= 0")
    if not 0 <= args.port < 65536:
        p.error(f"--port {args.port} is not a TCP port")
    return args


@dataclass
class ServerState:
    """What the HTTP handlers need (shared with rank 0's compute loop).

    Attributes:
        name: Model name.
        engine: This rank's engine (bindings for metadata and parsing).
        ctx: The ExecutionContext (``check_inputs`` only: the compute loop executes).
        batcher: Where infer requests are queued.
        metrics: Prometheus metrics.
        max_body: Largest accepted body in bytes.
        batch_dim: The engine's symbolic batch dim, or None when requests cannot merge.
        ready: False once shutdown began.
    """

    name: str
    engine: Any
    ctx: Any
    batcher: Batcher
    metrics: Metrics
    max_body: int
    batch_dim: str | None
    ready: bool = True


def build_app(state: ServerState) -> Any:
    """The Starlette application of the KServe v2 protocol."""
    from starlette.applications import Starlette  # noqa: PLC0415 - optional "serve" extra
    from starlette.responses import JSONResponse, Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    def error(status: int, message: str) -> Response:
        if status != 200:
            state.metrics.failure(status)
        return Response(protocol.error_body(message), status, media_type="application/json")

    def check_model(request: Any) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version", "1")
        if name != state.name or version not in ("", "1"):
            raise protocol.ModelNotFoundError(
                f"unknown model '{name}'" + (f" version '{version}'" if version != "1" else "")
                + f"; this server holds '{state.name}' version 1")

    async def server_metadata(request: Any) -> Response:
        return JSONResponse({"name": "dist_rt", "version": __version__,
                             "extensions": ["binary_tensor_data"]})

    async def live(request: Any) -> Response:
        return Response(status_code=200)

    async def ready(request: Any) -> Response:
        return Response(status_code=200 if state.ready else 503)

    async def model_metadata(request: Any) -> Response:
        try:
            check_model(request)
        except protocol.ModelNotFoundError as exc:
            return Response(protocol.error_body(str(exc)), 404, media_type="application/json")
        return JSONResponse({"name": state.name, "versions": ["1"], "platform": "dist_rt",
                             "inputs": protocol.tensor_metadata(state.engine.inputs),
                             "outputs": protocol.tensor_metadata(state.engine.outputs)})

    async def model_ready(request: Any) -> Response:
        try:
            check_model(request)
        except protocol.ModelNotFoundError as exc:
            return Response(protocol.error_body(str(exc)), 404, media_type="application/json")
        return Response(status_code=200 if state.ready else 503)

    async def infer(request: Any) -> Response:
        started = time.perf_counter()
        state.metrics.request()
        try:
            check_model(request)
            if request.headers.get("content-encoding", "identity") != "identity":
                raise InputError(f"Content-Encoding {request.headers['content-encoding']!r} "
                                 f"is not supported; send the body uncompressed")
            body = await _read_body(request, state.max_body)
            parsed = protocol.parse_infer_request(
                body, request.headers.get(protocol.HEADER_LENGTH), state.engine.inputs,
                state.engine.outputs)
            state.ctx.check_inputs(parsed.inputs)
            future = asyncio.get_running_loop().create_future()
            state.batcher.submit(_job(state, parsed.inputs, future))
        except protocol.ModelNotFoundError as exc:
            return error(404, str(exc))
        except InputError as exc:
            return error(400, str(exc))
        except QueueFullError as exc:
            return error(503, str(exc))
        results, message = await future
        if message is not None:
            return error(503 if "shutting down" in message else 500, message)
        body, headers = protocol.encode_infer_response(state.name, parsed, results)
        state.metrics.latency(time.perf_counter() - started)
        return Response(body, 200, headers=headers)

    async def metrics(request: Any) -> Response:
        return Response(state.metrics.render(), 200,
                        headers={"content-type": state.metrics.content_type})

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [Route("/v2", server_metadata), Route("/v2/health/live", live),
              Route("/v2/health/ready", ready), Route("/metrics", metrics)]
    for base in (model, versioned):
        routes += [Route(base, model_metadata), Route(base + "/ready", model_ready),
                   Route(base + "/infer", infer, methods=["POST"])]
    return Starlette(routes=routes)


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, or InputError when it is over ``limit`` bytes.

    An oversized body is still read to its end (and dropped) so the client, which sends it
    whole before reading the answer, gets the 400 rather than a reset connection.
    """
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise InputError(f"request body of {size} bytes is over the limit of {limit} "
                         f"(--max-body-bytes)")
    return b"".join(chunks)


def _job(state: ServerState, feeds: dict, future: asyncio.Future) -> Job:
    """A job whose answer resolves ``future`` on the event loop's thread."""
    loop = future.get_loop()

    def resolve(value: tuple) -> None:
        if not future.done():  # the client may have gone (cancelled)
            future.set_result(value)

    def done(outputs: dict | None, message: str | None) -> None:
        try:
            loop.call_soon_threadsafe(resolve, (outputs, message))
        except RuntimeError:
            pass  # the event loop is closed: the server is gone, nobody waits for this answer

    first = next(iter(feeds.values()))
    batchable = state.batch_dim is not None and state.batcher.max_batch > 1 and first.ndim > 0
    return Job(feeds, int(first.shape[0]) if batchable else 1,
               batch_key(feeds) if batchable else None, done)


class HttpThread(threading.Thread):
    """uvicorn on a daemon thread (it installs no signal handlers off the main thread)."""

    def __init__(self, app: Any, host: str, port: int):
        super().__init__(name="dist_rt-http", daemon=True)
        import uvicorn  # noqa: PLC0415 - optional "serve" extra

        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off", timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)

    def run(self) -> None:
        """Serve until ``server.should_exit``; a failed bind ends the thread early."""
        try:
            self.server.run()
        except SystemExit:
            pass  # uvicorn exits this way when it cannot bind; wait_started reports it

    def wait_started(self, timeout: float) -> bool:
        """True once listening; False when the thread ended first or ``timeout`` passed."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.is_alive() and not self.server.started:
            time.sleep(0.02)
        return self.server.started


def _lead(args: argparse.Namespace, engine: Any, ctx: Any, holder: dict[str, Any],
          name: str, memory: list, stop: threading.Event) -> None:
    """Rank 0: serve HTTP until a signal, then stop the followers."""
    from dist_rt.serve.workers import Leader  # noqa: PLC0415

    comm, world, log = holder["comm"], holder["world"], holder["log"]
    batcher = Batcher(args.max_batch, args.max_delay_ms / 1000.0, args.max_queue)
    metrics = Metrics(name, args.max_batch, memory)
    state = ServerState(name, engine, ctx, batcher, metrics, args.max_body_bytes,
                        batch_symbol(engine.inputs, engine.outputs))
    leader = Leader(comm, ctx, batcher, metrics, world)
    http = HttpThread(build_app(state), args.host, args.port)
    http.start()
    if not http.wait_started(30.0):
        leader.stop()
        raise DistRtError(f"cannot serve HTTP on {args.host}:{args.port} (port in use, or "
                          f"not an address of this host)")
    log(f"serve  '{name}' on http://{args.host}:{args.port} ({world} rank(s), max batch "
        f"{args.max_batch if state.batch_dim else 1}, max delay {args.max_delay_ms} ms)")

    def keep_going() -> bool:
        if stop.is_set() and not http.server.should_exit:
            # Stop accepting; uvicorn lets requests in flight finish, and those need this
            # loop to keep executing, so the loop runs on until the HTTP thread is gone.
            state.ready = False
            http.server.should_exit = True
        return http.is_alive()

    leader.serve(keep_going)
    leader.stop()
    if not stop.is_set():
        raise DistRtError("the HTTP server stopped unexpectedly")
    log(f"stop   after {leader.batches} batches")


def _serve(args: argparse.Namespace, holder: dict[str, Any]) -> int:
    from dist_rt.serve.workers import follow, setup_rank  # noqa: PLC0415

    stop = threading.Event()
    # Every rank takes SIGTERM/SIGINT (mpiexec forwards them to all): rank 0 shuts down in
    # order; the others ignore it and leave when rank 0 says "stop", so none dies mid-batch.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine, name = setup_rank(args, holder)
    comm, rank, world = holder["comm"], holder["rank"], holder["world"]
    with engine.create_execution_context() as ctx:
        ctx.set_communicator(comm)
        memory = comm.all_gather_object({"rank": rank, "weight_bytes": engine.weight_bytes,
                                         "activation_bytes": engine.activation_bytes})
        if rank == 0:
            _lead(args, engine, ctx, holder, name, memory, stop)
        else:
            follow(comm, ctx, world)
    comm.barrier()
    print(f"dist_rt.serve: rank {rank}/{world} stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dist_rt.serve``.

    Returns:
        0 after a graceful stop, 1 on a dist_rt error (one line on stderr; every rank ends).
    """
    args = parse_args(argv)
    holder: dict[str, Any] = {"comm": None}
    try:
        return _serve(args, holder)
    except DistRtError as exc:
        print(f"dist_rt: error: {exc}", file=sys.stderr, flush=True)
        _cli.abort_job(holder["comm"], str(exc))
        return 1
    except Exception as exc:
        # A bug, not a user error: keep the traceback, but never leave other ranks waiting.
        _cli.abort_job(holder["comm"], f"{type(exc).__name__}: {exc}")
        raise

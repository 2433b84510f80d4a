"""Load test of ``python -m dist_rt.serve``: N requests, C concurrent, every answer checked.

Start a server first (see README.md), then::

    python examples/30_serving/load.py --url 127.0.0.1:8000 --model tiny.onnx

It builds the same model on one rank here, computes the reference answer of every distinct
input, sends ``--requests`` infer requests from ``--concurrency`` threads (each with its own
``tritonclient.http`` connection; binary tensors both ways) with a random mix of
``--seq-lens``, and prints lost requests (errors, no answer), wrong answers (max abs error
over ``--tolerance``), throughput and latency percentiles. Exits 1 when any were lost or wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np


def _reference(model: str | None, feeds: list[dict[str, np.ndarray]]) -> list[dict]:
    """Single-rank, unsharded answers of every distinct input."""
    from dist_rt.builder import Builder, BuilderConfig  # noqa: PLC0415
    from dist_rt.models import default_model  # noqa: PLC0415
    from dist_rt.onnx.importer import parse_onnx  # noqa: PLC0415

    engine = Builder(BuilderConfig(device="cpu")).build(parse_onnx(model or default_model()))
    with engine.create_execution_context() as ctx:
        return [ctx.execute(f) for f in feeds]


def _inputs(args: argparse.Namespace) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(args.seed)
    lens = [int(s) for s in args.seq_lens.split(",")]
    return [{"input_ids": rng.integers(0, args.vocab, (1, lens[i % len(lens)]), dtype=np.int64)}
            for i in range(args.distinct)]


def run_load(args: argparse.Namespace) -> dict[str, float]:
    """Send the requests and return the figures (``lost``, ``wrong``, ``qps``, ``p50_ms``...)."""
    import tritonclient.http as http  # noqa: PLC0415

    feeds = _inputs(args)
    refs = _reference(args.model, feeds)
    lock = threading.Lock()
    counter = iter(range(args.requests))
    latencies: list[float] = []
    figures = {"lost": 0, "wrong": 0, "max_error": 0.0}
    errors: list[str] = []

    def worker() -> None:
        client = http.InferenceServerClient(args.url, network_timeout=120.0)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            feed, ref = feeds[i % len(feeds)], refs[i % len(feeds)]
            inp = http.InferInput("input_ids", list(feed["input_ids"].shape), "INT64")
            inp.set_data_from_numpy(feed["input_ids"], binary_data=True)
            out = [http.InferRequestedOutput(name, binary_data=True) for name in ref]
            t0 = time.perf_counter()
            try:
                result = client.infer(args.name, [inp], outputs=out, request_id=str(i))
                got = {name: result.as_numpy(name) for name in ref}
            except Exception as exc:  # noqa: BLE001 - any failure is a lost request
                with lock:
                    figures["lost"] += 1
                    errors.append(f"request {i}: {exc}")
                continue
            dt = time.perf_counter() - t0
            err = max(float(np.max(np.abs(got[n] - ref[n]))) if got[n] is not None
                      and got[n].shape == ref[n].shape else float("inf") for n in ref)
            with lock:
                latencies.append(dt)
                figures["max_error"] = max(figures["max_error"], err)
                figures["wrong"] += err > args.tolerance
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies or [0.0]) * 1e3
    figures.update(requests=args.requests, seconds=wall, qps=len(latencies) / wall,
                   p50_ms=float(np.percentile(lat, 50)), p99_ms=float(np.percentile(lat, 99)))
    for line in errors[:5]:
        print(line, file=sys.stderr)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the load, print one summary line per figure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="127.0.0.1:8000", help="host:port of the server")
    p.add_argument("--model", help="the ONNX file the server serves (default: embedded model)")
    p.add_argument("--name", help="model name on the server (default: the file's stem)")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seq-lens", default="8,16", help="sequence lengths to mix")
    p.add_argument("--distinct", type=int, default=64, help="distinct inputs (reference runs)")
    p.add_argument("--vocab", type=int, default=100, help="token ids are drawn below this")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.name is None:
        args.name = os.path.splitext(os.path.basename(args.model))[0] if args.model else "default"
    f = run_load(args)
    print(f"requests {f['requests']}, concurrency {args.concurrency}, {f['seconds']:.2f} s")
    print(f"lost requests {f['lost']}, wrong answers {f['wrong']} (max error "
          f"{f['max_error']:.2e})")
    print(f"throughput {f['qps']:.1f} req/s, latency p50 {f['p50_ms']:.2f} ms, "
          f"p99 {f['p99_ms']:.2f} ms")
    return 1 if f["lost"] or f["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())

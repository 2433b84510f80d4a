"""``python -m dist_rt.serve``: a real 2-rank server on CPU, queried with tritonclient.

One server (``mpiexec -n 2``) serves a tiny Llama for the whole module; the test methods run in
order and the last one stops it with SIGTERM. Pure parts (protocol, batcher) are tested
in-process first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from dist_rt.errors import InputError
from dist_rt.serve import protocol
from dist_rt.serve.batcher import Batcher, Job, QueueFullError, batch_key, concat, split

http = pytest.importorskip("tritonclient.http")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from mpi_util import ROOT, mpiexec_path  # noqa: E402 - after the optional-dependency skips

VOCAB = 128
IDS = [("input_ids", np.dtype(np.int64), ("batch", "seq"))]
LOGITS = [("logits", np.dtype(np.float32), ("batch", "seq", VOCAB))]


class TestProtocol:
    def test_binary_and_json_inputs(self):
        x = np.arange(6, dtype=np.int64).reshape(2, 3)
        head = json.dumps({"id": "7", "inputs": [
            {"name": "input_ids", "shape": [2, 3], "datatype": "INT64",
             "parameters": {"binary_data_size": 48}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
        req = protocol.parse_infer_request(head + x.tobytes(), str(len(head)), IDS, LOGITS)
        assert req.id == "7" and req.outputs == {"logits": True}
        np.testing.assert_array_equal(req.inputs["input_ids"], x)
        body = json.dumps({"inputs": [{"name": "input_ids", "shape": [2, 3],
                                       "datatype": "INT64", "data": x.tolist()}]}).encode()
        req = protocol.parse_infer_request(body, None, IDS, LOGITS)
        np.testing.assert_array_equal(req.inputs["input_ids"], x)
        assert req.outputs == {"logits": False}

    @pytest.mark.parametrize("body, match", [
        (b"{not json", "malformed JSON"),
        (b"[1]", "JSON object"),
        (b'{"inputs": [{"name": "ids", "shape": [1], "datatype": "INT64", "data": [1]}]}',
         "unknown input"),
        (b'{"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "FP32", '
         b'"data": [1, 2]}]}', "datatype FP32, expected INT64"),
        (b'{"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "INT64", '
         b'"data": [1, 2]}]}', "has 2 elements"),
        (b'{"inputs": [{"name": "input_ids", "shape": [1, 1], "datatype": "INT64", '
         b'"data": [1]}], "outputs": [{"name": "probs"}]}', "unknown output"),
    ])
    def test_bad_requests(self, body, match):
        with pytest.raises(InputError, match=match):
            protocol.parse_infer_request(body, None, IDS, LOGITS)

    def test_response_mixes_json_and_binary(self):
        req = protocol.InferRequest("r", {}, {"a": True, "b": False})
        a, b = np.ones((2, 2), np.float32), np.arange(3, dtype=np.int64)
        body, headers = protocol.encode_infer_response("m", req, {"a": a, "b": b})
        n = int(headers[protocol.HEADER_LENGTH])
        reply = json.loads(body[:n])
        assert reply["id"] == "r" and reply["outputs"][1]["data"] == [0, 1, 2]
        assert np.frombuffer(body[n:], np.float32).tolist() == [1.0] * 4


class TestBatcher:
    def _job(self, rows, seq):
        feeds = {"input_ids": np.zeros((rows, seq), np.int64)}
        return Job(feeds, rows, batch_key(feeds), lambda *_: None)

    def test_merges_compatible_and_keeps_order(self):
        b = Batcher(max_batch=4, max_delay=0.0, max_queue=10)
        jobs = [self._job(1, 8), self._job(2, 16), self._job(2, 8), self._job(2, 8)]
        for j in jobs:
            b.submit(j)
        assert b.next_batch(0.1) == [jobs[0], jobs[2]]  # the third would exceed 4 rows
        assert b.next_batch(0.1) == [jobs[1]]
        assert b.next_batch(0.1) == [jobs[3]]
        assert b.next_batch(0.01) == []

    def test_split_inverts_concat(self):
        jobs = [self._job(1, 4), self._job(3, 4)]
        jobs[1].feeds["input_ids"][:] = 1
        merged = concat(jobs)
        parts = split(jobs, {"y": merged["input_ids"] * 2})
        assert [p["y"].shape for p in parts] == [(1, 4), (3, 4)] and parts[1]["y"].min() == 2

    def test_full_queue_refuses(self):
        b = Batcher(max_batch=1, max_delay=0.0, max_queue=2)
        b.submit(self._job(1, 4))
        b.submit(self._job(1, 4))
        with pytest.raises(QueueFullError, match="max-queue"):
            b.submit(self._job(1, 4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A 2-rank server on a tiny Llama; yields (url, model path, process)."""
    from dist_rt import models

    exe = mpiexec_path()
    if exe is None:
        pytest.skip("mpiexec not found (pip install mpich)")
    path = str(tmp_path_factory.mktemp("serve") / "tiny.onnx")
    models.write(models.make_llama(models.LlamaConfig(
        vocab=VOCAB, hidden=64, layers=1, heads=4, kv_heads=2, mlp=128, max_seq=64)), path)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [exe, "-n", "2", sys.executable, "-m", "dist_rt.serve", path, "--device", "cpu",
           "--port", str(port), "--max-batch", "8", "--max-delay-ms", "5",
           "--max-body-bytes", "100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited {proc.returncode}: {proc.communicate()[1][-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server not ready within 60 s")
            time.sleep(0.2)
        yield url, path, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def reference(server):
    """Single-process, unsharded answers: ``ref(ids) -> logits``."""
    from dist_rt.builder import Builder, BuilderConfig
    from dist_rt.onnx.importer import parse_onnx

    engine = Builder(BuilderConfig(device="cpu")).build(parse_onnx(server[1]))
    ctx = engine.create_execution_context()
    lock = threading.Lock()

    def ref(ids):
        with lock:
            return ctx.execute({"input_ids": ids})["logits"]

    yield ref
    ctx.close()


def _ids(seed, batch, seq):
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, seq), dtype=np.int64)


def _post(url, path, body, headers=None):
    req = urllib.request.Request(f"http://{url}{path}", data=body, headers=headers or {},
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class TestServer:
    def test_metadata_and_health(self, server):
        client = http.InferenceServerClient(server[0])
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("tiny")
        meta = client.get_model_metadata("tiny")
        assert meta["inputs"] == [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}]
        assert meta["outputs"][0]["shape"] == [-1, -1, VOCAB]
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

    @pytest.mark.parametrize("binary_in", [True, False])
    @pytest.mark.parametrize("binary_out", [True, False, None])
    def test_sequential(self, server, reference, binary_in, binary_out):
        client = http.InferenceServerClient(server[0])
        for seed, (batch, seq) in enumerate([(1, 8), (3, 5)]):
            ids = _ids(seed, batch, seq)
            inp = http.InferInput("input_ids", [batch, seq], "INT64")
            inp.set_data_from_numpy(ids, binary_data=binary_in)
            outs = None if binary_out is None else [
                http.InferRequestedOutput("logits", binary_data=binary_out)]
            result = client.infer("tiny", [inp], outputs=outs, request_id=f"q{seed}")
            assert result.get_response()["id"] == f"q{seed}"
            np.testing.assert_allclose(result.as_numpy("logits"), reference(ids), atol=1e-4)

    def test_concurrent_requests_are_batched(self, server, reference):
        client = http.InferenceServerClient(server[0], concurrency=32)
        shapes = [(1, 8), (2, 8), (1, 12)]
        feeds = [_ids(100 + i, *shapes[i % 3]) for i in range(32)]
        pending = []
        for i, ids in enumerate(feeds):
            inp = http.InferInput("input_ids", list(ids.shape), "INT64")
            inp.set_data_from_numpy(ids, binary_data=True)
            pending.append(client.async_infer("tiny", [inp], request_id=str(i)))
        for i, (ids, p) in enumerate(zip(feeds, pending, strict=True)):
            result = p.get_result(timeout=60)
            assert result.get_response()["id"] == str(i)
            np.testing.assert_allclose(result.as_numpy("logits"), reference(ids), atol=1e-4)
        client.close()
        metrics = urllib.request.urlopen(f"http://{server[0]}/metrics").read().decode()
        sizes = [line for line in metrics.splitlines()
                 if line.startswith("dist_rt_batch_size_bucket") and 'le="1.0"' in line]
        count = [line for line in metrics.splitlines()
                 if line.startswith("dist_rt_batch_size_count")]
        # Some executions held more than one row: fewer batches than rows of size <= 1.
        assert float(sizes[0].split()[-1]) < float(count[0].split()[-1])

    @pytest.mark.parametrize("path, body, status, match", [
        ("/v2/models/nope/infer", b"{}", 404, "unknown model 'nope'"),
        ("/v2/models/tiny/infer", b"{oops", 400, "malformed JSON"),
        ("/v2/models/tiny/infer", json.dumps({"inputs": [{"name": "ids", "shape": [1, 2],
         "datatype": "INT64", "data": [1, 2]}]}).encode(), 400, "unknown input"),
        ("/v2/models/tiny/infer", json.dumps({"inputs": [{"name": "input_ids",
         "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}).encode(), 400, "expected INT64"),
        ("/v2/models/tiny/infer", json.dumps({"inputs": [{"name": "input_ids", "shape": [2],
         "datatype": "INT64", "data": [1, 2]}]}).encode(), 400, "rank"),
        ("/v2/models/tiny/infer", b" " * 200_000, 400, "over the limit"),
    ])
    def test_errors(self, server, reference, path, body, status, match):
        code, reply = _post(server[0], path, body, {"Content-Type": "application/json"})
        assert code == status and match in json.loads(reply)["error"]
        # The server keeps serving after a bad request.
        ids = _ids(7, 1, 4)
        inp = http.InferInput("input_ids", [1, 4], "INT64")
        inp.set_data_from_numpy(ids)
        result = http.InferenceServerClient(server[0]).infer("tiny", [inp])
        np.testing.assert_allclose(result.as_numpy("logits"), reference(ids), atol=1e-4)

    def test_tritonclient_raises_server_error(self, server):
        inp = http.InferInput("input_ids", [1, 300], "INT64")  # beyond max_seq 64 RoPE rows
        inp.set_data_from_numpy(np.zeros((1, 300), np.int64))
        with pytest.raises(Exception, match="rank") as info:
            http.InferenceServerClient(server[0]).infer("tiny", [inp])
        assert "InferenceServerException" in type(info.value).__name__

    def test_metrics(self, server):
        text = urllib.request.urlopen(f"http://{server[0]}/metrics").read().decode()
        for name in ("dist_rt_requests_total", "dist_rt_request_failures_total",
                     "dist_rt_queue_seconds_bucket", "dist_rt_compute_seconds_sum"):
            assert name in text
        assert 'dist_rt_request_failures_total{code="404",model="tiny"} 1.0' in text
        for rank in ("0", "1"):
            assert f'dist_rt_rank_memory_bytes{{kind="weights",rank="{rank}"}}' in text
            assert f'dist_rt_rank_memory_bytes{{kind="arena_peak",rank="{rank}"}}' in text

    def test_load_script(self, server):
        sys.path.insert(0, os.path.join(ROOT, "examples", "30_serving"))
        try:
            import load
        finally:
            sys.path.pop(0)
        assert load.main(["--url", server[0], "--model", server[1], "--requests", "64",
                          "--concurrency", "8", "--distinct", "8", "--vocab", str(VOCAB)]) == 0

    def test_sigterm_stops_every_rank(self, server):
        proc = server[2]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-3000:]
        assert "rank 0/2 stopped" in err and "rank 1/2 stopped" in err

"""planfile: the network hash (parallel, chunked SHA-256) and the streamed plan file writer."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from dist_rt import dtypes, planfile
from dist_rt.errors import PlanFileError
from dist_rt.network import Network
from dist_rt.weights import Weights


def _network(weights: dict[str, np.ndarray]) -> Network:
    """x -> MatMul(x, w_0) -> MatMul(., w_1) ... over the given (square) weights."""
    net = Network("chain")
    first = next(iter(weights.values()))
    y = net.add_input("x", first.dtype, ("batch", first.shape[0]))
    for name, value in weights.items():
        y = net.add_matmul(y, net.add_constant(name, value))
    net.mark_output(y)
    return net


def _weights(seed: int = 0, n: int = 3, dim: int = 33) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"w{i}": rng.standard_normal((dim, dim)).astype(np.float32) for i in range(n)}


@pytest.fixture
def small_chunks(monkeypatch):
    """Pieces of 64 bytes and threads from the first byte, so small tests cover both."""
    monkeypatch.setattr(planfile, "HASH_CHUNK_BYTES", 64)
    monkeypatch.setattr(planfile, "_PARALLEL_HASH_BYTES", 0)


class TestNetworkHash:
    def test_equal_networks_equal_hashes(self):
        assert planfile.network_hash(_network(_weights())) == \
            planfile.network_hash(_network(_weights()))

    @pytest.mark.parametrize("workers", [1, 2, 4, 7])
    def test_independent_of_worker_count(self, small_chunks, workers):
        net = _network(_weights())
        assert planfile.network_hash(net, workers=workers) == \
            planfile.network_hash(net, workers=1)

    def test_independent_of_module_worker_default(self, small_chunks, monkeypatch):
        net = _network(_weights())
        want = planfile.network_hash(net)
        monkeypatch.setattr(planfile, "HASH_WORKERS", 1)
        assert planfile.network_hash(net) == want

    @pytest.mark.parametrize("index", [0, 64 * 3 + 5, 33 * 33 * 4 - 1])  # first, mid, last
    def test_one_byte_changes_the_hash(self, small_chunks, index):
        weights = _weights()
        before = planfile.network_hash(_network(weights), workers=4)
        raw = weights["w1"].view(np.uint8).reshape(-1)
        raw[index] ^= 1
        assert planfile.network_hash(_network(weights), workers=4) != before

    def test_one_byte_changes_the_hash_default_chunks(self):
        weights = _weights()
        before = planfile.network_hash(_network(weights))
        weights["w2"].view(np.uint8).reshape(-1)[-1] ^= 0x80
        assert planfile.network_hash(_network(weights)) != before

    def test_weight_name_changes_the_hash(self):
        weights = _weights()
        renamed = {("v1" if k == "w1" else k): v for k, v in weights.items()}
        assert planfile.network_hash(_network(weights)) != \
            planfile.network_hash(_network(renamed))

    def test_dtype_and_shape_change_the_hash(self):
        def net(value, shape):
            n = Network("one")
            n.mark_output(n.add_layer("Reshape", [
                n.add_constant("w", value),
                n.add_constant("s", np.asarray(shape, np.int64))]).outputs[0])
            return n

        a = np.arange(12, dtype=np.int32)
        hashes = {planfile.network_hash(net(a, [3, 4])),
                  planfile.network_hash(net(a.reshape(3, 4), [3, 4])),   # shape
                  planfile.network_hash(net(a.view(np.float32), [3, 4]))}  # dtype, same bytes
        assert len(hashes) == 3

    def test_layer_change_changes_the_hash(self):
        net = _network(_weights())
        before = planfile.network_hash(net)
        net.layers[0].attributes["note"] = 1
        assert planfile.network_hash(net) != before

    def test_mapped_weights_hash_like_arrays(self, tmp_path):
        weights = _weights(n=2)
        path = tmp_path / "w.bin"
        path.write_bytes(b"".join(w.tobytes() for w in weights.values()))
        net = _network(weights)
        mapped = _network(weights)
        for i, name in enumerate(weights):
            w = weights[name]
            mapped.tensors[name].weights = Weights.from_file(str(path), i * w.nbytes, w.dtype,
                                                             w.shape)
        assert mapped.tensors["w0"].weights.is_mapped
        assert planfile.network_hash(mapped, workers=3) == planfile.network_hash(net)

    def test_non_contiguous_weights_hash_their_values(self, small_chunks):
        w = _weights(n=1)["w0"]
        strided = np.asfortranarray(w)
        assert not strided.flags.c_contiguous
        assert planfile.network_hash(_network({"w0": strided}), workers=2) == \
            planfile.network_hash(_network({"w0": w}), workers=1)

    def test_string_constants_hash_their_text_not_pointers(self):
        def net(words):
            n = Network("strings")
            n.mark_output(n.add_layer("Identity", [n.add_constant("s", words)]).outputs[0])
            return n

        a = np.array(["alpha", "beta"], dtype=object)
        b = np.array(["".join(["al", "pha"]), "beta"], dtype=object)  # other str objects
        assert planfile.network_hash(net(a)) == planfile.network_hash(net(b))
        assert planfile.network_hash(net(a)) != \
            planfile.network_hash(net(np.array(["alpha", "gamma"], dtype=object)))

    def test_digest_definition(self, small_chunks):
        """D = SHA-256(SHA-256(piece_1) || ...), pieces of HASH_CHUNK_BYTES bytes."""
        value = np.arange(100, dtype=np.float16).reshape(10, 10)  # 200 bytes: 64+64+64+8
        raw = value.tobytes()
        inner = b"".join(hashlib.sha256(raw[i:i + 64]).digest() for i in range(0, 200, 64))
        assert planfile.weight_digest(value) == hashlib.sha256(inner).digest()
        assert planfile.weight_digest(np.zeros(0, np.float32)) == hashlib.sha256().digest()

    def test_bfloat16_weights(self):
        w = np.arange(16, dtype=np.float32).reshape(4, 4).astype(dtypes.bfloat16)
        digest = planfile.weight_digest(w)
        assert digest == planfile.weight_digest(w.copy())
        w2 = w.copy()
        w2[3, 3] = 0
        assert planfile.weight_digest(w2) != digest


def _reference_file(header: dict, constants: list) -> bytes:
    """The plan file the module docstring describes, built in memory the plain way."""
    table, offset = [], 0
    for t in constants:
        offset = planfile._align(offset)
        table.append({"name": t.name, "dtype": dtypes.name_of(t.weights.dtype),
                      "shape": list(t.weights.shape), "offset": offset,
                      "nbytes": t.weights.nbytes})
        offset += t.weights.nbytes
    blob = json.dumps(dict(header, weights=table), separators=(",", ":")).encode()
    body = blob + b"\0" * (planfile._align(64 + len(blob)) - 64 - len(blob))
    payload = b""
    for t, rec in zip(constants, table, strict=True):
        payload += b"\0" * (rec["offset"] - len(payload)) + t.weights.numpy().tobytes()
    body += payload
    return planfile._PREAMBLE.pack(planfile.MAGIC, planfile.FORMAT_VERSION, 0, len(blob),
                                   len(payload), hashlib.sha256(body).digest()) + body


class TestWrite:
    def _constants(self, tmp_path):
        rng = np.random.default_rng(3)
        net = Network("w")
        values = {"a": rng.standard_normal((5, 3)).astype(np.float32),  # 60 bytes: padded
                  "b": np.asfortranarray(rng.standard_normal((7, 2))),    # not contiguous
                  "c": np.arange(11, dtype=np.int8),
                  "d": np.zeros((0, 4), np.float16)}
        path = tmp_path / "m.bin"
        path.write_bytes(values["a"].tobytes())
        for name, value in values.items():
            net.add_constant(name, value)
        net.tensors["a"].weights = Weights.from_file(str(path), 0, np.float32, (5, 3))
        return [net.tensors[n] for n in sorted(values)], values

    def test_bytes_match_the_documented_layout(self, tmp_path):
        constants, _ = self._constants(tmp_path)
        header = {"x": 1, "name": "plan"}
        planfile.write(tmp_path / "p.plan", header, constants)
        assert (tmp_path / "p.plan").read_bytes() == _reference_file(header, constants)

    def test_round_trip(self, tmp_path):
        constants, values = self._constants(tmp_path)
        planfile.write(tmp_path / "p.plan", {}, constants)
        _, weights = planfile.read(tmp_path / "p.plan")
        for name, value in values.items():
            np.testing.assert_array_equal(weights[name].numpy(), value)

    def test_failed_write_leaves_no_temp_file(self, tmp_path, monkeypatch):
        constants, _ = self._constants(tmp_path)

        def fail(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(planfile.os, "replace", fail)
        with pytest.raises(PlanFileError, match="No space left"):
            planfile.write(tmp_path / "p.plan", {}, constants)
        assert not [n for n in os.listdir(tmp_path) if n.startswith(".plan-")]
        assert not (tmp_path / "p.plan").exists()

"""Engine save/load: round trip, and every kind of damage gives a clear error, never code."""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import struct

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig, Engine, engine, planfile
from dist_rt.errors import PlanFileError, PlanMismatchError, VersionMismatchError
from dist_rt.network import Network


def _network(rng, rank=0, world=1):
    net = Network("mlp")
    x = net.add_input("x", np.float32, ("batch", 9))
    w1 = net.add_constant("w1", rng.standard_normal((9, 17)).astype(np.float32))
    w2 = net.add_constant("w2", rng.standard_normal((17, 3)).astype(np.float32))
    h = net.add_activation(net.add_matmul(x, w1), "Relu")
    net.mark_output(net.add_matmul(h, w2))
    net.layers[0].metadata["note"] = {"src": "test", "arr": np.arange(3)}
    net.metadata.update(rank=rank, world_size=world)
    return net


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    eng = Builder(BuilderConfig()).build(_network(rng), input_shapes={"x": (4, 9)})
    path = tmp_path / "model.r0.plan"
    eng.save(path)
    return eng, path


def _rewrite_header(path, edit):
    """Edit the JSON header and re-seal the file (valid checksum), as a forger would."""
    data = path.read_bytes()
    magic, ver, res, hlen, plen, _ = struct.unpack("<8sIIQQ32s", data[:64])
    header = json.loads(data[64:64 + hlen])
    edit(header)
    blob = json.dumps(header).encode()
    start = 64 + hlen + (-(64 + hlen)) % 64
    pad = b"\0" * ((-(64 + len(blob))) % 64)
    rest = blob + pad + data[start:]
    path.write_bytes(struct.pack("<8sIIQQ32s", magic, ver, res, len(blob), plen,
                                 hashlib.sha256(rest).digest()) + rest)


class TestRoundTrip:
    def test_same_outputs_and_fields(self, saved):
        eng, path = saved
        loaded = Engine.load(path)
        x = np.random.default_rng(1).standard_normal((5, 9)).astype(np.float32)
        with eng.create_execution_context() as a, loaded.create_execution_context() as b:
            ra, rb = a.execute({"x": x}), b.execute({"x": x})
        for name in ra:
            np.testing.assert_array_equal(ra[name], rb[name])
        for field in ("rank", "world_size", "plan_hash", "device", "precision", "weight_bytes",
                      "memory_plan", "tactics", "inputs", "outputs", "device_arch"):
            assert getattr(loaded, field) == getattr(eng, field), field
        assert loaded.network.layers[0].metadata["note"]["src"] == "test"

    def test_weights_are_memory_mapped_and_aligned(self, saved):
        _, path = saved
        loaded = Engine.load(path)
        for t in loaded.network.constants:
            arr = t.weights.numpy()
            assert isinstance(arr.base, np.memmap) or isinstance(arr, np.memmap)
            assert not arr.flags.writeable
        header, _ = planfile.read(path)
        assert all(w["offset"] % 64 == 0 for w in header["weights"])
        for key in ("format_version", "dist_rt_version", "device_arch", "rank", "world_size",
                    "plan_hash", "tactics", "memory_plan"):
            assert key in header

    def test_array_attributes_round_trip(self, tmp_path):
        value = np.arange(6, dtype=np.int64).reshape(2, 3)
        enc = planfile.encode_value({"a": [value, 1.5, "s", b"raw"]}, "here")
        dec = planfile.decode_value(json.loads(json.dumps(enc)), "here")
        np.testing.assert_array_equal(dec["a"][0], value)
        assert dec["a"][1:] == [1.5, "s", b"raw"]

    def test_save_over_loaded_file(self, saved):
        _, path = saved
        loaded = Engine.load(path)
        loaded.save(path)           # atomic replace: the old mapping stays valid
        again = Engine.load(path)
        assert again.plan_hash == loaded.plan_hash
        np.testing.assert_array_equal(loaded.network.constants[0].weights.numpy(),
                                      again.network.constants[0].weights.numpy())

    def test_rank_world_checked(self, tmp_path):
        eng = Builder().build(_network(np.random.default_rng(0), rank=2, world=4))
        path = tmp_path / "r2.plan"
        eng.save(path)
        assert Engine.load(path, rank=2, world_size=4).rank == 2
        with pytest.raises(PlanMismatchError, match="world of 4 ranks, expected 2"):
            Engine.load(path, world_size=2)
        with pytest.raises(PlanMismatchError, match="rank 2, expected rank 0"):
            Engine.load(path, rank=0)


class TestDamage:
    @pytest.mark.parametrize("keep", [0, 10, 63, 64, 100, -65, -1])
    def test_truncated(self, saved, keep):
        _, path = saved
        data = path.read_bytes()
        path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
        with pytest.raises(PlanFileError, match="truncated"):
            Engine.load(path)

    @pytest.mark.parametrize("where", ["header", "weights"])
    def test_flipped_byte(self, saved, where):
        _, path = saved
        data = bytearray(path.read_bytes())
        pos = 80 if where == "header" else len(data) - 5
        data[pos] ^= 0x40
        path.write_bytes(bytes(data))
        with pytest.raises(PlanFileError, match="checksum mismatch"):
            Engine.load(path)

    def test_wrong_magic(self, saved):
        _, path = saved
        data = path.read_bytes()
        path.write_bytes(b"NOTAPLAN" + data[8:])
        with pytest.raises(PlanFileError, match="not a dist_rt plan file"):
            Engine.load(path)

    def test_onnx_file_is_not_a_plan(self, tmp_path):
        path = tmp_path / "x.plan"
        path.write_bytes(b"\x08\x07" + b"\0" * 200)
        with pytest.raises(PlanFileError, match="magic"):
            Engine.load(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(PlanFileError, match="cannot read"):
            Engine.load(tmp_path / "nope.plan")

    def test_foreign_format_version(self, saved):
        _, path = saved
        data = bytearray(path.read_bytes())
        data[8:12] = struct.pack("<I", 99)
        path.write_bytes(bytes(data))
        with pytest.raises(VersionMismatchError, match="version 99.*reads version 1"):
            Engine.load(path)

    def test_foreign_dist_rt_major(self, saved):
        _, path = saved
        _rewrite_header(path, lambda h: h.update(dist_rt_version="7.0.0"))
        with pytest.raises(VersionMismatchError, match="dist_rt 7.0.0"):
            Engine.load(path)

    def test_huge_header_length(self, saved):
        _, path = saved
        data = bytearray(path.read_bytes())
        data[16:24] = struct.pack("<Q", 1 << 62)
        path.write_bytes(bytes(data))
        with pytest.raises(PlanFileError, match="header length"):
            Engine.load(path)

    def test_weight_claims_huge_size(self, saved):
        _, path = saved

        def edit(h):
            h["weights"][0]["shape"] = [1 << 40, 1 << 20]
            h["weights"][0]["nbytes"] = 4 << 60
        _rewrite_header(path, edit)
        with pytest.raises(PlanFileError, match="does not fit"):
            Engine.load(path)

    def test_unknown_op(self, saved):
        _, path = saved
        _rewrite_header(path, lambda h: h["network"]["layers"][0].update(op_type="Evil"))
        with pytest.raises(PlanFileError, match="unknown op.*Evil"):
            Engine.load(path)

    def test_bad_dtype(self, saved):
        _, path = saved
        _rewrite_header(path, lambda h: h["weights"][0].update(dtype="object"))
        with pytest.raises(PlanFileError, match="unknown dtype 'object'"):
            Engine.load(path)

    def test_dangling_tensor(self, saved):
        _, path = saved
        _rewrite_header(path, lambda h: h["network"]["layers"][0]["inputs"].__setitem__(0, "zz"))
        with pytest.raises(PlanFileError, match="'zz'"):
            Engine.load(path)


def test_loader_runs_no_code():
    """The loader never unpickles or evaluates: no pickle/eval/exec in its source."""
    for module in (planfile, engine):
        tree = ast.parse(inspect.getsource(module))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        imports = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                   for a in n.names}
        assert not {"eval", "exec", "compile", "__import__"} & names, module.__name__
        assert not {"pickle", "marshal", "dill", "shelve"} & imports, module.__name__
        assert "loads" not in attrs or "json" in inspect.getsource(module)
    assert dist_rt.__version__

"""ExecutionContext: input checks, communicator checks, freeing, profiling."""

from __future__ import annotations

import numpy as np
import pytest

from collectives import LocalCommunicator
from dist_rt import Builder, BuilderConfig, ExecutionContext
from dist_rt.errors import CommunicatorMismatchError, ExecutionError, InputError
from dist_rt.network import Network
from dist_rt.runtime.backends import get_backend


def _engine(world=1, rank=0, profile=False):
    rng = np.random.default_rng(0)
    net = Network("two")
    a = net.add_input("a", np.float32, ("batch", "seq", 8))
    b = net.add_input("b", np.float32, ("batch", 8, 3))
    w = net.add_constant("w", rng.standard_normal((8, 8)).astype(np.float32))
    h = net.add_activation(net.add_matmul(a, w), "Relu")
    net.mark_output(net.add_matmul(h, b))
    net.metadata.update(rank=rank, world_size=world)
    cfg = BuilderConfig(verify=True)
    if profile:
        cfg.add_profile("p", min={"a": (1, 1, 8), "b": (1, 8, 3)},
                        opt={"a": (2, 4, 8), "b": (2, 8, 3)},
                        max={"a": (4, 16, 8), "b": (4, 8, 3)})
    return Builder(cfg).build(net), w.weights.numpy()


def _feeds(batch=2, seq=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((batch, seq, 8)).astype(np.float32),
            "b": rng.standard_normal((batch, 8, 3)).astype(np.float32)}


class TestExecute:
    @pytest.mark.parametrize("batch, seq", [(1, 1), (3, 7)])
    def test_matches_numpy(self, batch, seq):
        engine, w = _engine()
        feeds = _feeds(batch, seq)
        with engine.create_execution_context() as ctx:
            out = ctx.execute(feeds)
        (name, got), = out.items()
        np.testing.assert_allclose(got, np.maximum(feeds["a"] @ w, 0) @ feeds["b"], rtol=1e-5)
        assert name == engine.outputs[0][0] and isinstance(got, np.ndarray)

    def test_intermediates_freed_after_last_use(self):
        engine, _ = _engine()
        ctx = ExecutionContext(engine)
        freed = {n for names in ctx._free_after for n in names}
        produced = {t.name for lay in engine.network.layers for t in lay.outputs}
        assert freed == produced - {t.name for t in engine.network.outputs} | {"a", "b"}

    def test_profiling(self):
        engine, _ = _engine()
        with engine.create_execution_context() as ctx:
            ctx.profiling = True
            ctx.execute(_feeds())
            assert set(ctx.layer_times) == {lay.name for lay in engine.network.layers}

    def test_closed(self):
        engine, _ = _engine()
        ctx = engine.create_execution_context()
        ctx.close()
        with pytest.raises(ExecutionError, match="closed"):
            ctx.execute(_feeds())


class TestInputErrors:
    @pytest.mark.parametrize("feeds, match", [
        ({"a": 1}, "missing input"),
        ({**_feeds(), "c": np.zeros(1)}, r"unknown input\(s\) \['c'\]"),
        ({"a": _feeds()["a"].astype(np.float64), "b": _feeds()["b"]},
         "input 'a': dtype float64, expected float32"),
        ({"a": _feeds()["a"][0], "b": _feeds()["b"]}, "input 'a'.*rank 2, expected rank 3"),
        ({"a": np.zeros((2, 5, 9), np.float32), "b": _feeds()["b"]},
         r"input 'a'.*dim 2 must be 8"),
        ({"a": _feeds(batch=3)["a"], "b": _feeds(batch=2)["b"]},
         r"input 'b': dim 0 \('batch'\) is 2, but input 'a' gives 'batch' = 3"),
        ({"a": [[1.0]], "b": _feeds()["b"]}, "expected an array, got list"),
    ])
    def test_bad_feeds(self, feeds, match):
        engine, _ = _engine()
        with engine.create_execution_context() as ctx, pytest.raises(InputError, match=match):
            ctx.execute(feeds)

    def test_not_a_dict(self):
        engine, _ = _engine()
        with engine.create_execution_context() as ctx, pytest.raises(InputError, match="dict"):
            ctx.execute([1, 2])

    def test_profile_bounds(self):
        engine, _ = _engine(profile=True)
        with engine.create_execution_context() as ctx:
            ctx.execute(_feeds(batch=4, seq=16))
            with pytest.raises(InputError, match="outside profile 'p'"):
                ctx.execute(_feeds(batch=2, seq=17))


class TestCommunicator:
    def test_local_ok(self):
        engine, _ = _engine()
        with engine.create_execution_context() as ctx:
            ctx.set_communicator(LocalCommunicator())
            ctx.execute(_feeds())

    def test_world_mismatch(self):
        engine, _ = _engine(world=2, rank=1)
        with engine.create_execution_context() as ctx:
            with pytest.raises(CommunicatorMismatchError, match="rank 0 of 1.*rank 1 of 2"):
                ctx.set_communicator(LocalCommunicator())
            with pytest.raises(CommunicatorMismatchError, match="set_communicator"):
                ctx.execute(_feeds())

    def test_cuda_communicator_on_cpu_engine(self):
        engine, _ = _engine()
        with engine.create_execution_context() as ctx:
            with pytest.raises(CommunicatorMismatchError, match="CUDA"):
                ctx.set_communicator(LocalCommunicator(device="cuda"))


def test_cpu_backend_interface():
    cpu = get_backend("cpu")
    x = np.arange(3)
    assert cpu.xp is np and cpu.to_device(x) is x and cpu.to_host(x) is x
    assert cpu.device_arch()

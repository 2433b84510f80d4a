"""Run under ``mpiexec -n N``: plan, partition and run several models; compare every rank's
outputs with the unsharded reference. Prints one ``OK <model> <max err> <counts>`` line per
model on rank 0 and exits non-zero on any mismatch."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nets import run_network, transformer  # noqa: E402

import sharding  # noqa: E402
from dist_rt.errors import DistRtError  # noqa: E402
from dist_rt.ops import RunContext  # noqa: E402

#: Weights dominate at decode shapes; a slow memory makes sharding pay off on tiny models.
TEST_COST = sharding.CostModel(alpha=1e-6, link_bandwidth=1e9, peak_flops=1e9,
                               memory_bandwidth=1e9, name="test")


def communicator():
    """The project's MPI communicator."""
    try:
        import collectives

        return collectives.create_communicator("mpi")
    except (ImportError, AttributeError):
        from collectives.mpi import MpiCommunicator

        return MpiCommunicator()


def models():
    """(name, network factory, feeds) triples; the zoo joins when its ops are registered."""
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 64, (2, 5))
    yield "transformer", lambda: transformer(), {"input_ids": ids}
    yield "transformer-uneven", lambda: transformer(vocab=66, hidden=60, heads=5, mlp=100), \
        {"input_ids": rng.integers(0, 66, (1, 3))}
    try:
        from dist_rt.models.llama import LlamaConfig, make_llama, sample_inputs
        from dist_rt.onnx.importer import parse_onnx

        for cfg in (LlamaConfig(vocab=128, hidden=64, heads=4, kv_heads=2, mlp=96, layers=2),
                    LlamaConfig(vocab=130, hidden=48, heads=6, kv_heads=3, mlp=100, layers=1)):
            model = make_llama(cfg)
            parse_onnx(model)
            yield f"llama-h{cfg.heads}kv{cfg.kv_heads}", lambda m=model: parse_onnx(m), \
                sample_inputs(cfg, batch=2, seq=6)
    except DistRtError as exc:
        print(f"SKIP llama: {str(exc)[:120]}", flush=True)


def main() -> int:
    comm = communicator()
    n, rank = comm.size, comm.rank
    failures = 0
    for name, factory, feeds in models():
        ref = run_network(factory(), feeds)
        plan = sharding.plan(factory(), n, cost_model=TEST_COST)
        local = plan.partition(rank)
        assert local.metadata["rank"] == rank and local.metadata["world_size"] == n
        rt = RunContext(communicator=comm, rank=rank, world_size=n)
        got = run_network(local, feeds, rt)
        err = max(float(np.max(np.abs(got[k] - ref[k]))) for k in ref)
        hashes = comm.all_gather_object(plan.plan_hash)
        ok = err <= 1e-4 and set(got) == set(ref) and len(set(hashes)) == 1
        if not ok:
            failures += 1
            print(f"FAIL rank {rank} {name}: max err {err}, hashes {hashes}", flush=True)
        elif rank == 0:
            print(f"OK {name} {err:.2e} {plan.collective_counts()}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run under ``mpiexec -n N``: plan, partition and run every test model; compare each rank's
outputs with the unsharded reference.

Models: the hand-built transformers of ``nets.py``, the zoo (Llama with GQA + RoPE, GPT-2,
BERT with an attention mask, ViT, ResNet, top-2-of-4 MoEs, dense and capacity-dispatch,
the latter also with all_to_all expert parallelism) in even and uneven sizes, and
the PyTorch-dynamo fixtures of ``tests/fixtures`` (also against PyTorch's own outputs). One
model also goes through ``dist_rt.export_onnx`` -> ``dist_rt.parse_onnx`` and must give the
same outputs. Prints one ``OK <model> <max err> <collectives>`` line per model on rank 0
and ``FAIL ...`` on any rank that mismatches; exits non-zero on failure.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nets import run_network, transformer  # noqa: E402

import sharding  # noqa: E402
from dist_rt.ops import RunContext  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

#: Collectives cost about 10 us and memory streams 1 GB/s: a tiny decoder layer's weights
#: (~100 KB) are then worth two all-reduces, its RoPE tables (2 KB) are not. The same
#: balance as ``CostModel.cpu_mpi`` on the default model, scaled to test sizes.
TEST_COST = sharding.CostModel(alpha=1e-5, link_bandwidth=1e9, peak_flops=1e9,
                               memory_bandwidth=1e9, name="test")
#: Collectives almost free: shards nearly everything, to exercise every rule.
EAGER_COST = sharding.CostModel(alpha=1e-7, link_bandwidth=1e10, peak_flops=1e9,
                                memory_bandwidth=1e9, name="eager")


def communicator():
    """The project's MPI communicator."""
    import collectives

    return collectives.create_communicator("mpi")


def zoo_cases():
    """(name, ModelProto, feeds) for the zoo generators, even and uneven sizes."""
    from dist_rt.models import REGISTRY

    cases = [
        ("llama", {"vocab": 128, "hidden": 64, "heads": 8, "kv_heads": 4, "mlp": 128,
                   "layers": 2, "max_seq": 32}),
        ("llama", {"vocab": 130, "hidden": 48, "heads": 6, "kv_heads": 3, "mlp": 100,
                   "layers": 1, "max_seq": 32}),
        ("llama", {"vocab": 128, "hidden": 64, "heads": 4, "kv_heads": 2, "mlp": 96,
                   "layers": 1, "max_seq": 32, "tie_embeddings": True}),
        ("gpt2", {}),
        ("gpt2", {"vocab": 66, "hidden": 60, "heads": 6, "layers": 1}),
        ("bert", {}),
        ("vit", {}),
        ("resnet", {}),
        ("moe", {}),
        ("moe", {"experts": 6, "ffn": 50}),
        ("moe", {"dispatch": "capacity"}),
        ("moe", {"dispatch": "capacity", "experts": 6, "ffn": 50}),
    ]
    for name, over in cases:
        spec = REGISTRY[name]
        cfg = spec.config(**over)
        label = name + "".join(f" {k}={v}" for k, v in over.items() if k in
                               ("hidden", "heads", "kv_heads", "experts", "tie_embeddings",
                                "dispatch"))
        yield label, spec.make(cfg), spec.sample_inputs(cfg, 2)


def fixture_cases():
    """(name, path, feeds, torch outputs) for the dynamo-exported fixtures."""
    for name in ("gpt2_block", "bert_block", "llama_block", "resnet_tiny", "vit_tiny"):
        data = np.load(os.path.join(FIXTURES, f"{name}.npz"))
        feeds = {k[3:]: v for k, v in data.items() if k.startswith("in_")}
        torch_out = [data[k] for k in sorted(k for k in data if k.startswith("out_"))]
        yield name, os.path.join(FIXTURES, f"{name}.onnx"), feeds, torch_out


def check(comm, name, load, feeds, cost, torch_out=None, round_trip=False,
          hints=None) -> bool:
    """Plan ``load()`` over the communicator's ranks and compare with the unsharded run."""
    n, rank = comm.size, comm.rank
    t0 = time.perf_counter()
    try:
        reference = load()
        ref = run_network(reference, feeds)
        if torch_out is not None:
            ref_err = max(float(np.max(np.abs(ref[t.name] - o)))
                          for t, o in zip(reference.outputs, torch_out, strict=True))
            if ref_err > 1e-4:
                print(f"FAIL rank {rank} {name}: unsharded run vs PyTorch: {ref_err}")
                return False
        plan = sharding.plan(load(), n, cost_model=cost, hints=hints)
        local = plan.partition(rank)
        rt = RunContext(communicator=comm, rank=rank, world_size=n)
        got = run_network(local, feeds, rt)
        err = max(float(np.max(np.abs(got[k] - ref[k]))) for k in ref)
        if round_trip:
            import dist_rt

            again = dist_rt.parse_onnx(dist_rt.export_onnx(local))
            got2 = run_network(again, feeds, RunContext(communicator=comm, rank=rank,
                                                        world_size=n))
            err = max(err, max(float(np.max(np.abs(got2[k] - got[k]))) for k in got))
        hashes = comm.all_gather_object(plan.plan_hash)
        ok = err <= 1e-4 and set(got) == set(ref) and len(set(hashes)) == 1
    except Exception:  # noqa: BLE001 - report and let the other models run
        print(f"FAIL rank {rank} {name}: {traceback.format_exc(limit=-4)}", flush=True)
        return False
    if not ok:
        print(f"FAIL rank {rank} {name}: max err {err}, hashes {hashes}", flush=True)
    elif rank == 0:
        print(f"OK {name} [{cost.name}] {err:.2e} {plan.collective_counts()} "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    return ok


def check_expert_parallel(comm) -> bool:
    """Capacity MoE with data-parallel tokens: GShard's all_to_all plan where E and the token
    groups divide over the ranks (N = 2, 4), the planner's free choice otherwise."""
    from dist_rt import parse_onnx
    from dist_rt.models import MoEConfig, make_moe
    from dist_rt.models.moe import sample_inputs

    cfg = MoEConfig(dispatch="capacity")
    model = make_moe(cfg)
    split = cfg.experts % comm.size == 0 and cfg.groups % comm.size == 0
    hints = {"layers": {"*/dispatch/Einsum": "split-g", "*/combine/Einsum": "split-g"}} \
        if split and comm.size > 1 else None
    cost = sharding.CostModel(alpha=1e-5, link_bandwidth=1e9, peak_flops=1e12,
                              memory_bandwidth=1e9, name="decode")
    return check(comm, "moe capacity all_to_all", lambda: parse_onnx(model), sample_inputs(cfg),
                 cost, hints=hints)


def main() -> int:
    from dist_rt import parse_onnx

    comm = communicator()
    rng = np.random.default_rng(7)
    ok = check(comm, "transformer", transformer, {"input_ids": rng.integers(0, 64, (2, 5))},
               TEST_COST)
    ok &= check(comm, "transformer-uneven",
                lambda: transformer(vocab=66, hidden=60, heads=5, mlp=100),
                {"input_ids": rng.integers(0, 66, (1, 3))}, EAGER_COST)
    for i, (name, model, feeds) in enumerate(zoo_cases()):
        for cost in (TEST_COST, EAGER_COST):
            ok &= check(comm, name, lambda m=model: parse_onnx(m), feeds, cost,
                        round_trip=i == 0 and cost is TEST_COST)
    ok &= check_expert_parallel(comm)
    for name, path, feeds, torch_out in fixture_cases():
        for cost in (TEST_COST, EAGER_COST):
            ok &= check(comm, name, lambda p=path: parse_onnx(p), feeds, cost, torch_out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

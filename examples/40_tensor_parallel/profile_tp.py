"""Where a tensor-parallel decode step spends its GPU time, per kernel, at N = world size.

Same model and plan as ``bench_tp.py`` (its flags: ``--layers``, ``--hidden``, ...; Megatron
hints), built on every rank of one ``mpirun -n N``; rank 0 replays the step's CUDA graph
under ``torch.profiler`` (CUPTI sees CuPy's, cuBLAS's and NCCL's kernels) and prints the
wall time per step, the kernel time per step, the kernel count and the top kernels. The
difference between wall and kernel time is launch gaps; kernel time past the weight-read
bound is what small kernels and collectives cost.

Usage (4 GPUs): ``mpirun -n 4 python examples/40_tensor_parallel/profile_tp.py --shapes 1x1``
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "20_llama_vs_pytorch"))

import bench_tp  # noqa: E402
from profile_kernels import kernel_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Build at N = world size and profile each ``--shapes`` entry on rank 0."""
    args = bench_tp.parse_args(argv)
    job = bench_tp.Job(args)
    from launch.bootstrap import bind_device  # noqa: PLC0415

    bind_device(job.info)
    import cupy  # noqa: PLC0415
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    import dist_rt  # noqa: PLC0415
    import sharding  # noqa: PLC0415
    from dist_rt import Builder, BuilderConfig  # noqa: PLC0415
    from dist_rt.models.llama import sample_inputs  # noqa: PLC0415

    cfg = bench_tp.model_config(args)
    workdir = args.workdir or "/tmp/dist_rt_tp_profile"
    os.makedirs(workdir, exist_ok=True)
    path = bench_tp.generate(cfg, workdir, job) if job.rank == 0 else None
    path = job.world.broadcast_object(path, root=0)
    network = dist_rt.parse_onnx(path)
    n = job.size
    with bench_tp.sub_communicator(job, n) as comm:
        local = network
        if n > 1:
            plan = sharding.plan(network, n, hints=bench_tp.MEGATRON, device="cuda",
                                 input_shapes={"input_ids": args.shape_list[0]})
            local = plan.partition(job.rank)
        engine = Builder(BuilderConfig(device="cuda", precision=bench_tp.PRECISION[args.dtype],
                                       optimization_level=2)).build(local)
        with engine.create_execution_context() as ctx:
            ctx.set_communicator(comm)
            for batch, seq in args.shape_list:
                ids = cupy.asarray(sample_inputs(cfg, batch, seq, seed=1)["input_ids"])
                step = lambda ids=ids: ctx.execute({"input_ids": ids},  # noqa: E731
                                                   copy_outputs=False)
                for _ in range(5):
                    step()
                cupy.cuda.Device().synchronize()
                walls = bench_tp.time_ms(step, args, bench_tp._cupy_timer())
                # Every rank runs the profiled steps (collectives need all of them).
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(args.iters):
                        step()
                    cupy.cuda.Device().synchronize()
                if job.rank == 0:
                    us, count, rows = kernel_table(prof, args.iters)
                    print(f"\n== N={n} {batch}x{seq}: wall {np.median(walls):.3f} ms/step, "
                          f"kernels {us / 1e3:.3f} ms/step, {count} kernels/step; weights "
                          f"{engine.weight_bytes / 2**30:.2f} GiB per rank", flush=True)
                    for name, c, t in rows[:18]:
                        print(f"  {t / args.iters:9.1f} us  {c // args.iters:4d}x  "
                              f"{name[:100]}", flush=True)
                comm.barrier()
    bench_tp.close_deferred(job)
    job.world.barrier()
    job.world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

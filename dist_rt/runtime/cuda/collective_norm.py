"""dist_rt::AllReduceAddRMSNorm on CUDA: one NVLink kernel when it can, else the two steps.

With an :class:`collectives.nccl.NcclCommunicator` whose one-shot NVLink path is active and
takes the arrays (``all_reduce_add_rmsnorm`` returns the pair), the all-reduce, the residual
add and the RMSNorm are one kernel. Otherwise (NCCL, a message or row count above the
one-shot limits, another communicator) the layer all-reduces through the communicator and
runs the fused AddRMSNorm kernel, which is what the two unfused layers would do. Every rank
takes the same branch: the decision depends only on the shapes and dtypes (SPMD) and on the
NVLink path, which the ranks agreed on at creation.
"""

from __future__ import annotations

import cupy

from dist_rt.ops.add_rms_norm import AddRMSNorm
from dist_rt.ops.dist_collective import DistCollective


def all_reduce_add_rmsnorm(layer, inputs, rt) -> list | None:
    """``[S, Y]`` of the fused layer, or None when the generic op must run (no communicator,
    a 1-rank group, a non-contiguous or host input)."""
    from dist_rt.runtime.cuda.kernels import add_rmsnorm  # noqa: PLC0415 - kernels imports us

    x, residual, scale = inputs
    comm = rt.communicator
    if comm is None or not all(isinstance(a, cupy.ndarray) for a in inputs):
        return None
    group = [int(g) for g in layer.attr("group", []) or []]
    if not group or sorted(group) == list(range(comm.size)):
        fused = getattr(comm, "all_reduce_add_rmsnorm", None)
        if fused is not None:
            x, residual, scale = (cupy.ascontiguousarray(a) for a in (x, residual, scale))
            out = fused(x, residual, scale, float(layer.attr("epsilon", 1e-5)))
            if out is not None:
                return list(out)
    # Never return None from here on: the generic op would all-reduce a second time.
    args = [DistCollective._run(layer, [x], rt)[0], residual, scale]
    return add_rmsnorm(layer, args, rt) or AddRMSNorm._run(layer, args, rt)

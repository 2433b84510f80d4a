"""Fuse a sum all-reduce into the AddRMSNorm that reads it: one dist_rt::AllReduceAddRMSNorm.

Pattern (every block of a Megatron-sharded transformer, twice: after the attention output
projection and after the MLP down projection, both row-parallel)::

    A = DistCollective(X, all_reduce, sum)        A read by nothing else
    S, Y = AddRMSNorm(A, R, w)   (or (R, A, w))   A and R of one shape

becomes ``S, Y = AllReduceAddRMSNorm(X, R, w)``; ``S`` and ``Y`` keep their names. On the
CUDA backend with the NVLink one-shot all-reduce active, that is one kernel instead of two
(``collectives/nvlink.py``): at 32 layers that is 64 launches and 64 passes over the sum
fewer per decode step. Otherwise the layer runs the all-reduce and AddRMSNorm one after the
other, exactly as before, so the fusion never changes results beyond the norm's summation
order.

Only on CUDA builds (``BuilderConfig.device`` ``"cuda"``, or ``"auto"`` finding a GPU): the
CPU's MPI communicator gains nothing from it. Runs after ``fuse_add_rmsnorm`` (which makes
the AddRMSNorm) on the rank-local network, where the partitioner's collectives are layers.
"""

from __future__ import annotations

from dist_rt.builder.passes import BuildState, on_cuda
from dist_rt.builder.passes.fuse_util import Matcher, add_fused, prune_fused
from dist_rt.network import Layer, Network, Tensor

#: DistCollective attributes the fused layer keeps (its reference all-reduce reads them).
_COLLECTIVE_ATTRS = ("collective_operation", "reduce_op", "root", "group", "group_size")


def _all_reduce(m: Matcher, t: Tensor) -> Layer | None:
    """The sum all-reduce writing ``t`` when only one layer reads ``t``, else None."""
    layer = m.producer(t, "DistCollective")
    if layer is None or not m.private(t):
        return None
    op = str(layer.attr("collective_operation", "all_reduce")).lower()
    return layer if op == "all_reduce" and str(layer.attr("reduce_op", "sum")).lower() == "sum" \
        else None


def _match(m: Matcher, norm: Layer) -> tuple[Layer, Tensor] | None:
    """(the all-reduce, the residual input) of an AddRMSNorm fed by one, else None."""
    if norm.op_type != "AddRMSNorm" or norm.domain != "dist_rt":
        return None
    a, b = norm.inputs[0], norm.inputs[1]
    if a is None or b is None or a.dtype != b.dtype or a.shape is None or a.shape != b.shape:
        return None
    for reduced, residual in ((a, b), (b, a)):
        ar = _all_reduce(m, reduced)
        if ar is not None and ar.inputs[0].dtype == reduced.dtype:
            return ar, residual
    return None


def run(network: Network, state: BuildState) -> str:
    """Replace every all-reduce -> AddRMSNorm pair by one AllReduceAddRMSNorm (CUDA builds).

    Args:
        network: Edited in place.
        state: Build state (its config says whether this is a CUDA build).

    Returns:
        A summary line.
    """
    if not on_cuda(state):
        return "off: not a CUDA build"
    m = Matcher(network)
    fused = 0
    for norm in list(network.layers):
        found = _match(m, norm)
        if found is None:
            continue
        ar, residual = found
        attrs = {k: ar.attributes[k] for k in _COLLECTIVE_ATTRS if k in ar.attributes}
        attrs["epsilon"] = float(norm.attr("epsilon", 1e-5))
        layer = add_fused(network, "AllReduceAddRMSNorm",
                          [ar.inputs[0], residual, norm.inputs[2]], attrs,
                          name=f"{norm.name}.allreduce", outputs=list(norm.outputs),
                          replaces=[ar, norm])
        layer.nb_ranks = ar.nb_ranks
        fused += 1
    prune_fused(network, fused)
    return f"{fused} all-reduce+AddRMSNorm pairs fused"

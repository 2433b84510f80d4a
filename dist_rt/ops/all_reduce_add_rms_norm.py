"""dist_rt::AllReduceAddRMSNorm: a sum all-reduce and the AddRMSNorm that reads it, as one layer.

``A = sum over the group of X`` (a DistCollective ``all_reduce``), then ``S = A + R`` and
``Y = S / sqrt(mean(S^2 over the last axis) + epsilon) * scale`` (dist_rt::AddRMSNorm).
Outputs ``S`` (the residual stream) and ``Y``. The target of
``builder/passes/fuse_allreduce_norm.py``: in a Megatron-sharded block each row-parallel
projection's all-reduce feeds the residual add and the next norm, so one NVLink kernel can
do all three (``collectives/nvlink.py``, used by the CUDA backend's wrapper).

The layer carries both layers' attributes (``collective_operation``, ``reduce_op``,
``group``, ``root``, ``axis``; ``epsilon``) and its reference run is exactly theirs, one
after the other: the communicator's all-reduce, then AddRMSNorm's arithmetic.
"""

from __future__ import annotations

from dist_rt.ops._op import Op, check_inputs, register_op
from dist_rt.ops.add_rms_norm import AddRMSNorm
from dist_rt.ops.dist_collective import DistCollective


@register_op("AllReduceAddRMSNorm", since_opset=1, domain="dist_rt")
class AllReduceAddRMSNorm(Op):
    """Inputs X (this rank's partial sum), R (residual, X's shape), scale (1-D, last axis).

    Outputs: S = all_reduce(X) + R, Y = rms_norm(S) * scale.
    """

    deterministic = False  # reads other ranks' values: never folded or cached

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        reduced = DistCollective.infer(layer, inputs[:1])[0]
        return AddRMSNorm.infer(layer, [reduced, inputs[1], inputs[2]])

    @classmethod
    def _run(cls, layer, inputs, rt):
        x, residual, scale = inputs
        reduced = DistCollective._run(layer, [x], rt)[0]
        return AddRMSNorm._run(layer, [reduced, residual, scale], rt)

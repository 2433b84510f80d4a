"""ReverseSequence: reverse the first ``sequence_lens[b]`` steps of every batch entry ``b``."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import SameShapeOp, register_op
from dist_rt.ops._tensor_util import fmt, here, host_ints


@register_op("ReverseSequence", since_opset=10)
class ReverseSequence(SameShapeOp):
    """Attributes ``batch_axis`` (default 1) and ``time_axis`` (default 0), each 0 or 1."""

    arity = (2, 2)

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        lens = host_ints(inputs[1])
        b_axis, t_axis = int(layer.attr("batch_axis", 1)), int(layer.attr("time_axis", 0))
        if {b_axis, t_axis} != {0, 1} or x.ndim < 2:
            raise ShapeError(f"{here(layer)}batch_axis {b_axis} and time_axis {t_axis} must be "
                             f"0 and 1 of an input of rank >= 2, got {fmt(x.shape)}")
        if len(lens) != x.shape[b_axis] or any(not 0 <= n <= x.shape[t_axis] for n in lens):
            raise ShapeError(f"{here(layer)}sequence_lens {lens} must give one length in "
                             f"[0, {x.shape[t_axis]}] per batch entry ({x.shape[b_axis]})")
        out = x.copy()
        # One slice assignment per batch entry: batches are small, steps are not.
        for b, n in enumerate(lens):
            src = [slice(None)] * x.ndim
            src[b_axis], src[t_axis] = b, slice(n - 1, None, -1) if n else slice(0, 0)
            dst = list(src)
            dst[t_axis] = slice(0, n)
            out[tuple(dst)] = x[tuple(src)]
        return [out]

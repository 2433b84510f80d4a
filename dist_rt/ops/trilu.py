"""Trilu: keep the upper (``upper=1``) or lower triangle of the last two dims."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import fmt, here, host_ints


@register_op("Trilu", since_opset=14)
class Trilu(Op):
    """Inputs ``input (rank >= 2), k?`` (diagonal offset, default 0)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 2)
        x = inputs[0]
        if x.shape is not None and len(x.shape) < 2:
            raise ShapeError(f"{here(layer)}input {fmt(x.shape)} must have rank >= 2")
        return [TensorDesc(x.dtype, x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        k = host_ints(inputs[1])[0] if len(inputs) > 1 and inputs[1] is not None else 0
        # triu/tril of NumPy and CuPy apply to the last two dims of a stack.
        fn = rt.xp.triu if int(layer.attr("upper", 1)) else rt.xp.tril
        return [fn(x, k)]

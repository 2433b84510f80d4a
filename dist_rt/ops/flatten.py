"""Flatten: reshape to 2-D ``(prod(shape[:axis]), prod(shape[axis:]))``."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import dims_product_ratio, here


def _axis(layer, rank: int) -> int:
    axis = int(layer.attr("axis", 1))
    if not -rank <= axis <= rank:
        raise ShapeError(f"{here(layer)}axis {axis} is out of range [-{rank}, {rank}]")
    return axis + rank if axis < 0 else axis


@register_op("Flatten", since_opset=1)
class Flatten(Op):
    """Attribute ``axis`` (default 1; ``[-r, r]``)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        if x.shape is None:
            return [TensorDesc(x.dtype, (None, None))]
        axis = _axis(layer, len(x.shape))
        shape = (dims_product_ratio(x.shape[:axis], ()), dims_product_ratio(x.shape[axis:], ()))
        value = None if x.value is None else x.value.reshape(shape)
        return [TensorDesc(x.dtype, shape, value)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        axis = _axis(layer, x.ndim)
        # Explicit products rather than -1: -1 is ambiguous when a dim is 0.
        lead, tail = 1, 1
        for d in x.shape[:axis]:
            lead *= d
        for d in x.shape[axis:]:
            tail *= d
        return [x.reshape(lead, tail)]

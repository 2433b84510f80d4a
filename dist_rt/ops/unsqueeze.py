"""Unsqueeze: insert size-1 dims at ``axes`` of the output (attribute < 13, input >= 13)."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import (
    axes_list,
    here,
    normalize_axes,
    reshaped_input,
    run_axes,
    set_sym,
)


def unsqueeze_shape(layer, shape, axes: list[int]):
    """Output shape: axes are positions in the output (negative counts from its end)."""
    rank = len(shape) + len(axes)
    axes = set(normalize_axes(layer, axes, rank))
    dims = iter(shape)
    return tuple(1 if i in axes else next(dims) for i in range(rank))


@register_op("Unsqueeze", since_opset=1)
class Unsqueeze(Op):
    """Inputs ``data, axes`` (opset 13+) or attribute ``axes``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 2)
        x = inputs[0]
        given, axes = axes_list(layer, inputs, 1)
        if not given:
            raise ShapeError(f"{here(layer)}needs axes (attribute before opset 13, input 1 "
                             f"from opset 13)")
        if x.shape is None or axes is None:
            set_sym(layer, [None])
            return [TensorDesc(x.dtype, None)]
        shape = unsqueeze_shape(layer, x.shape, axes)
        return [reshaped_input(layer, inputs, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        return [x.reshape(unsqueeze_shape(layer, x.shape, run_axes(layer, inputs, 1)))]

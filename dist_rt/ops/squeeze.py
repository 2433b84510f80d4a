"""Squeeze: drop size-1 dims (``axes`` attribute before opset 13, input from 13)."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import (
    axes_list,
    fmt,
    here,
    normalize_axes,
    reshaped_input,
    run_axes,
    set_sym,
)


def squeeze_shape(layer, shape, axes: list[int] | None):
    """Output shape after squeezing ``axes`` (all size-1 dims when None); None if unknown.

    Raises:
        ShapeError: A squeezed dim is statically not 1.
    """
    if axes is None:
        if any(not isinstance(d, int) for d in shape):
            return None  # a symbolic dim might or might not be 1
        return tuple(d for d in shape if d != 1)
    axes = normalize_axes(layer, axes, len(shape))
    for a in axes:
        if isinstance(shape[a], int) and shape[a] != 1:
            raise ShapeError(f"{here(layer)}cannot squeeze axis {a} of input {fmt(shape)}: its "
                             f"size is {shape[a]}, expected 1")
    return tuple(d for i, d in enumerate(shape) if i not in axes)


@register_op("Squeeze", since_opset=1)
class Squeeze(Op):
    """Inputs ``data, axes?``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 2)
        x = inputs[0]
        given, axes = axes_list(layer, inputs, 1)
        if x.shape is None or (given and axes is None):
            set_sym(layer, [None])
            return [TensorDesc(x.dtype, None)]
        shape = squeeze_shape(layer, x.shape, axes if given else None)
        return [reshaped_input(layer, inputs, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        return [x.reshape(squeeze_shape(layer, x.shape, run_axes(layer, inputs, 1)))]

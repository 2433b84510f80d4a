"""Reshape: ONNX rules, ``0`` copies the input dim (unless ``allowzero``), ``-1`` is inferred.

Inference works on symbolic dims: the target may itself hold symbolic dims tracked through
``Shape -> Gather -> Concat``; ``-1`` is solved by cancelling symbols by name, e.g.
``('batch', 'seq', 256)`` reshaped to ``[0, 0, -1, 32]`` gives ``('batch', 'seq', 8, 32)``.
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Dim, Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import (
    dims_product_ratio,
    fmt,
    here,
    host_ints,
    numel,
    set_sym,
    sym_value,
)


def target_shape(layer, in_shape, target: list[Dim], allowzero: bool) -> tuple[Dim, ...]:
    """Resolve ``0`` and ``-1`` of a reshape target against ``in_shape``.

    Args:
        layer: The layer (for error messages).
        in_shape: The input's shape (dims may be symbolic or None), or None.
        target: Target dims (int, symbolic str, or None for unknown entries).
        allowzero: ONNX ``allowzero``: a 0 means an empty dim instead of "copy".

    Returns:
        The output shape.

    Raises:
        ShapeError: More than one ``-1``, a dim below -1, ``0`` copying a dim the input does
            not have, or element counts that cannot match.
    """
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"{here(layer)}shape {target} has more than one -1")
    out: list[Dim] = []
    for i, d in enumerate(target):
        if isinstance(d, int) and d < -1:
            raise ShapeError(f"{here(layer)}shape {target} has invalid dim {d}")
        if d == 0 and not allowzero:
            if in_shape is None:
                out.append(None)
                continue
            if i >= len(in_shape):
                raise ShapeError(f"{here(layer)}shape {target} copies dim {i} (0) but the input "
                                 f"{fmt(in_shape)} has rank {len(in_shape)}")
            out.append(in_shape[i])
        else:
            out.append(d)
    if -1 in out:
        if allowzero and 0 in out:
            raise ShapeError(f"{here(layer)}shape {target} mixes -1 with 0 under allowzero=1")
        pos = out.index(-1)
        rest = out[:pos] + out[pos + 1:]
        if in_shape is None:
            out[pos] = None
        else:
            try:
                out[pos] = dims_product_ratio(in_shape, rest) if 0 not in rest else None
            except ValueError:
                raise ShapeError(f"{here(layer)}cannot reshape input {fmt(in_shape)} to "
                                 f"{fmt(tuple(out))}: {numel(in_shape)} elements are not a "
                                 f"multiple of {numel(rest)}") from None
    n_in, n_out = numel(in_shape), numel(tuple(out))
    if n_in is not None and n_out is not None and n_in != n_out:
        raise ShapeError(f"{here(layer)}cannot reshape input {fmt(in_shape)} ({n_in} elements) "
                         f"to {fmt(tuple(out))} ({n_out} elements)")
    return tuple(out)


@register_op("Reshape", since_opset=1)
class Reshape(Op):
    """Inputs ``data, shape`` (opset 5+; opset 1 has a ``shape`` attribute)."""

    shape_inputs = (1,)

    @classmethod
    def _target(cls, layer, inputs):
        if layer.attr("shape") is not None:
            return [int(d) for d in layer.attr("shape")]
        return sym_value(layer, 1, inputs)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 2)
        data = inputs[0]
        target = cls._target(layer, inputs)
        allowzero = bool(layer.attr("allowzero", 0))
        if target is None:
            set_sym(layer, [None])
            shape_in = inputs[1].shape if len(inputs) > 1 and inputs[1] is not None else None
            rank = shape_in[0] if shape_in is not None and len(shape_in) == 1 else None
            return [TensorDesc(data.dtype, (None,) * rank if isinstance(rank, int) else None)]
        shape = target_shape(layer, data.shape, target, allowzero)
        # A reshaped tracked shape vector (e.g. to a scalar) keeps its elements.
        elems = sym_value(layer, 0, inputs)
        set_sym(layer, [elems if elems is not None and numel(shape) == len(elems) else None])
        value = None
        if data.value is not None and numel(shape) is not None:
            value = np.asarray(data.value).reshape(shape)
        return [TensorDesc(data.dtype, shape, value)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        data = inputs[0]
        if layer.attr("shape") is not None:
            target = [int(d) for d in layer.attr("shape")]
        else:
            target = host_ints(inputs[1])
        shape = target_shape(layer, data.shape, target, bool(layer.attr("allowzero", 0)))
        return [data.reshape(shape)]

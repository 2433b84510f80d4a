"""Shared machinery of MaxPool, AveragePool and LpPool: geometry, padding and windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs
from dist_rt.ops._window import extra_tail, pad_spatial, spatial_shape, window_params, windows


@dataclass
class PoolGeometry:
    """Resolved window geometry of one pooling layer on one input shape."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    pads: list[int]
    out: list[int]
    tail: list[int]


def kernel_of(layer: Any, nd: int) -> list[int]:
    """The ``kernel_shape`` attribute, checked against the spatial rank."""
    kernel = layer.attr("kernel_shape", None)
    if kernel is None or len(kernel) != nd or any(k < 1 for k in kernel):
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): kernel_shape {kernel} must "
                         f"give {nd} positive sizes for an input with {nd} spatial dims")
    return list(kernel)


def geometry(layer: Any, spatial: Any) -> PoolGeometry:
    """Resolve strides, dilations, pads, output size and the ceil-mode tail padding."""
    kernel = kernel_of(layer, len(spatial))
    ceil = bool(layer.attr("ceil_mode", 0))
    strides, dilations, pads, out = window_params(layer, spatial, kernel, ceil_mode=ceil)
    tail = extra_tail(spatial, kernel, strides, dilations, pads, out)
    return PoolGeometry(kernel, strides, dilations, pads, out, tail)


def pool_infer(layer: Any, inputs: Any, nb_outputs: int = 1) -> list[TensorDesc]:
    """Shape inference shared by the windowed pools."""
    check_inputs(layer, inputs, 1)
    x = inputs[0]
    xs = spatial_shape(layer, x.shape)
    if xs is None:
        return [TensorDesc(x.dtype, None)] * nb_outputs
    if not all(isinstance(d, int) for d in xs[2:]):
        shape = xs[:2] + (None,) * (len(xs) - 2)
    else:
        shape = (*xs[:2], *geometry(layer, xs[2:]).out)
    descs = [TensorDesc(x.dtype, shape)]
    if nb_outputs > 1:
        descs.append(TensorDesc(np.dtype(np.int64), shape))
    return descs


class WindowPool(Op):
    """Base of the one-output windowed pools (AveragePool, LpPool): shape inference."""

    @classmethod
    def infer(cls, layer, inputs):
        return pool_infer(layer, inputs)


def pooled_windows(xp: Any, x: Any, geo: PoolGeometry, value: float) -> Any:
    """Pad ``x`` with ``value`` (explicit pads plus the ceil tail) and stack its windows."""
    nd = len(geo.kernel)
    end = [p + t for p, t in zip(geo.pads[nd:], geo.tail, strict=True)]
    xpad = pad_spatial(xp, x, geo.pads[:nd], end, value)
    return windows(xp, xpad, geo.kernel, geo.strides, geo.dilations, geo.out)

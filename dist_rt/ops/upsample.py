"""Upsample (opsets 7-9, deprecated in 10): Resize with asymmetric coordinates.

Opset 7 takes ``scales`` as an attribute, opset 9 as input 1; ``mode`` is nearest (floor
rounding) or linear/bilinear. The interpolation is :func:`dist_rt.ops.resize.resize`.
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops.resize import plan_sizes, read_attrs, resize


def _scales(layer, given):
    if layer.opset < 9:
        return layer.attr("scales", None)
    return given


@register_op("Upsample", since_opset=7)
class Upsample(Op):
    """ONNX Upsample: X and scales (attribute before opset 9, input from opset 9)."""

    shape_inputs = (1,)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1 if layer.opset < 9 else 2)
        x = inputs[0]
        scales = _scales(layer, inputs[1].value if len(inputs) > 1 else None)
        if x.shape is None or scales is None or not all(isinstance(d, int) for d in x.shape):
            return [TensorDesc(x.dtype, None if x.shape is None else (None,) * len(x.shape))]
        axes = list(range(len(x.shape)))
        return [TensorDesc(x.dtype, tuple(plan_sizes(layer, x.shape, list(np.reshape(
            scales, -1)), None, axes)[1]))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        given = inputs[1] if len(inputs) > 1 else None
        if hasattr(given, "get"):
            given = given.get()
        scales = _scales(layer, given)
        if scales is None:
            raise ShapeError(f"layer '{layer.name}' (Upsample): scales are missing")
        axes = list(range(x.ndim))
        scales, out = plan_sizes(layer, x.shape, list(np.reshape(scales, -1)), None, axes)
        return [resize(rt.xp, x, scales, out, axes, None, read_attrs(layer, layer.opset))]

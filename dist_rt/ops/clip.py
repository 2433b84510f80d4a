"""Clip: ``Y = min(max(X, lo), hi)``; bounds are attributes before opset 11, inputs after."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import check_same_dtype
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("Clip", since_opset=1)
class Clip(Op):
    """``Y = min(max(X, min), max)``; a missing bound does not clip. When min > max every
    element becomes max, as ONNX specifies."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 3)
        for i, what in ((1, "min"), (2, "max")):
            bound = inputs[i] if i < len(inputs) else None
            if bound is not None and bound.shape is not None and len(bound.shape) > 1:
                raise ShapeError(f"layer '{layer.name}' (Clip): input {i} ({what}) has shape "
                                 f"{bound.shape}, expected a scalar")
        check_same_dtype(layer, inputs, range(len(inputs)))
        return [TensorDesc(inputs[0].dtype, inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        if layer.opset < 11:
            lo, hi = layer.attr("min", None), layer.attr("max", None)
        else:
            lo = inputs[1] if len(inputs) > 1 else None
            hi = inputs[2] if len(inputs) > 2 else None
        y = x
        if lo is not None:
            y = xp.maximum(y, xp.asarray(lo, dtype=x.dtype).reshape(()))
        if hi is not None:
            y = xp.minimum(y, xp.asarray(hi, dtype=x.dtype).reshape(()))
        # Copy when nothing clipped so the output never aliases the input.
        return [xp.array(y, dtype=x.dtype) if y is x else xp.asarray(y).astype(x.dtype)]

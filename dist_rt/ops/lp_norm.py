"""LpNormalization: ``Y = X / ||X||_p`` along ``axis`` (p is 1 or 2); zero vectors stay 0."""

from __future__ import annotations

from dist_rt.errors import UnsupportedOpError
from dist_rt.ops._op import SameShapeOp, normalize_axis, register_op


@register_op("LpNormalization", since_opset=1)
class LpNormalization(SameShapeOp):
    """ONNX LpNormalization: attributes axis (-1), p (2)."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        axis = normalize_axis(layer, int(layer.attr("axis", -1)), x.ndim)
        p = int(layer.attr("p", 2))
        if p == 1:
            norm = xp.abs(x).sum(axis=axis, keepdims=True)
        elif p == 2:
            norm = xp.sqrt((x * x).sum(axis=axis, keepdims=True))
        else:
            raise UnsupportedOpError(f"layer '{layer.name}' (LpNormalization): p={p}, expected "
                                     f"1 or 2")
        # a zero vector stays zero (as in the ONNX reference) instead of becoming NaN
        zero = norm == 0
        y = xp.where(zero, 0, x / xp.where(zero, 1, norm))
        return [y.astype(x.dtype, copy=False)]

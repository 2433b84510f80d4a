"""MeanVarianceNormalization: ``Y = (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9)`` over
``axes`` (default [0, 2, 3]), exactly ONNX's function body."""

from __future__ import annotations

from dist_rt.ops._norm import compute_dtype
from dist_rt.ops._op import SameShapeOp, normalize_axis, register_op


@register_op("MeanVarianceNormalization", since_opset=9)
class MeanVarianceNormalization(SameShapeOp):
    """ONNX MeanVarianceNormalization: attribute axes."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        axes = tuple(normalize_axis(layer, int(a), x.ndim, "axes entry")
                     for a in layer.attr("axes", [0, 2, 3]))
        xc = x.astype(compute_dtype(x.dtype), copy=False)
        mean = xc.mean(axis=axes, keepdims=True)
        var = (xc * xc).mean(axis=axes, keepdims=True) - mean * mean
        y = (xc - mean) / (xp.sqrt(xp.maximum(var, 0)) + 1e-9)
        return [y.astype(x.dtype, copy=False)]

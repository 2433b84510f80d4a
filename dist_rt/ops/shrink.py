"""Shrink: ``Y = X + bias if X < -lambd; X - bias if X > lambd; else 0``."""

from __future__ import annotations

from dist_rt.ops._op import SameShapeOp, register_op


@register_op("Shrink", since_opset=9)
class Shrink(SameShapeOp):
    """Soft/hard shrinkage with attributes ``lambd`` (0.5) and ``bias`` (0)."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        lambd = float(layer.attr("lambd", 0.5))
        bias = float(layer.attr("bias", 0.0))
        wide = x.astype("float64")
        y = xp.where(wide < -lambd, wide + bias, xp.where(wide > lambd, wide - bias, 0.0))
        return [y.astype(x.dtype)]

"""BitShift: shift unsigned integers left or right by per-element amounts."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("BitShift", since_opset=11)
class BitShift(Binary):
    """``Z = X << Y`` or ``X >> Y`` (``direction`` = ``"LEFT"``/``"RIGHT"``).

    Shifts of the type's width or more (or negative) give 0 (left) or the sign fill (right)
    instead of C's undefined behaviour.
    """

    widen_low_precision = False

    @classmethod
    def infer(cls, layer, inputs):
        direction = layer.attr("direction", None)
        if direction not in ("LEFT", "RIGHT"):
            raise ShapeError(f"layer '{layer.name}' (BitShift): attribute direction is "
                             f"{direction!r}, expected 'LEFT' or 'RIGHT'")
        outs = super().infer(layer, inputs)
        dtype = outs[0].dtype
        if dtype is not None and dtype.kind not in "iu":
            raise ShapeError(f"layer '{layer.name}' (BitShift): input dtype is {dtype}, "
                             f"expected an integer type")
        return outs

    @staticmethod
    def fn(xp, a, b, layer):
        bits = a.dtype.itemsize * 8
        # A negative amount read as unsigned is >= the width, as onnx's tests expect.
        big = (b >= bits) | (b < 0) if b.dtype.kind == "i" else b >= bits
        shift = xp.where(big, 0, b).astype(a.dtype)
        if layer.attr("direction") == "LEFT":
            return xp.where(big, 0, xp.left_shift(a, shift))
        fill = xp.where(a < 0, -1, 0).astype(a.dtype) if a.dtype.kind == "i" else 0
        return xp.where(big, fill, xp.right_shift(a, shift))

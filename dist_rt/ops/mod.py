"""Mod: the remainder of ``A / B``; ``fmod=0`` takes the divisor's sign, ``fmod=1`` the
dividend's (C ``fmod``)."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import Binary
from dist_rt.ops._op import register_op


@register_op("Mod", since_opset=10)
class Mod(Binary):
    """``C = A mod B`` (Python semantics) or ``fmod(A, B)`` (C semantics) with broadcasting."""

    @classmethod
    def infer(cls, layer, inputs):
        outs = super().infer(layer, inputs)
        dtype = outs[0].dtype
        if dtype is not None and dtype.kind == "b":
            raise ShapeError(f"layer '{layer.name}' (Mod): bool inputs are not allowed, "
                             f"expected a numeric dtype")
        return outs

    @staticmethod
    def fn(xp, a, b, layer):
        if layer.attr("fmod", 0):
            return xp.fmod(a, b)
        return xp.mod(a, b)

"""Gelu (opset 20): ``Y = X * Phi(X)``, exact (erf) or the tanh approximation."""

from __future__ import annotations

import math

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import Unary
from dist_rt.ops._math import erf
from dist_rt.ops._op import register_op


@register_op("Gelu", since_opset=20)
class Gelu(Unary):
    """``approximate="none"``: ``0.5 X (1 + erf(X / sqrt 2))``;
    ``"tanh"``: ``0.5 X (1 + tanh(sqrt(2 / pi) (X + 0.044715 X^3)))``."""

    @classmethod
    def infer(cls, layer, inputs):
        mode = layer.attr("approximate", "none")
        if mode not in ("none", "tanh"):
            raise ShapeError(f"layer '{layer.name}' (Gelu): attribute approximate is "
                             f"{mode!r}, expected 'none' or 'tanh'")
        return super().infer(layer, inputs)

    @staticmethod
    def fn(xp, x, layer):
        if layer.attr("approximate", "none") == "tanh":
            inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
            return 0.5 * x * (1.0 + xp.tanh(inner))
        return 0.5 * x * (1.0 + erf(xp, x * (1.0 / math.sqrt(2.0))).astype(x.dtype))

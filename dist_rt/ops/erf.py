"""Erf: the Gauss error function, elementwise."""

from __future__ import annotations

from dist_rt.ops._elementwise import Unary
from dist_rt.ops._math import erf
from dist_rt.ops._op import register_op


@register_op("Erf", since_opset=9)
class Erf(Unary):
    """The Gauss error function, elementwise."""

    @staticmethod
    def fn(xp, x, layer):
        return erf(xp, x)

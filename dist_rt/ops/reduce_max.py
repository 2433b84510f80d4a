"""ReduceMax: ``Y = max(X, axes)``; an empty set gives the lowest value."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceMax", since_opset=1)
class ReduceMax(Reduce):
    """``Y = max(X, axes)``; an empty set gives the lowest value."""

    identity = "max"
    xp_name = "max"

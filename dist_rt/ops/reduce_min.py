"""ReduceMin: ``Y = min(X, axes)``; an empty set gives the highest value."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceMin", since_opset=1)
class ReduceMin(Reduce):
    """``Y = min(X, axes)``; an empty set gives the highest value."""

    identity = "min"
    xp_name = "min"

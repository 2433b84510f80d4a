"""ReduceSum: ``Y = sum(X, axes)``."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceSum", since_opset=1)
class ReduceSum(Reduce):
    """``Y = sum(X, axes)``."""

    axes_input_since = 13
    xp_name = "sum"

"""ReduceMean: ``Y = mean(X, axes)``."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceMean", since_opset=1)
class ReduceMean(Reduce):
    """``Y = mean(X, axes)``."""

    xp_name = "mean"

"""ReduceProd: ``Y = prod(X, axes)``."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import Reduce


@register_op("ReduceProd", since_opset=1)
class ReduceProd(Reduce):
    """``Y = prod(X, axes)``."""

    identity = 1.0
    xp_name = "prod"

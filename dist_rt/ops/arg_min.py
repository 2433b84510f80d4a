"""ArgMin: the index of the minimum along ``axis`` (int64)."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._reduce import ArgReduce


@register_op("ArgMin", since_opset=1)
class ArgMin(ArgReduce):
    """``Y = argmin(X, axis)``; ``keepdims`` (default 1), ``select_last_index`` (default 0)."""

    @staticmethod
    def arg(xp, x, axis):
        return xp.argmin(x, axis=axis)

"""Conv: split the batch, the output channels or the input channels.

``Y[n, m] = sum_c X[n, c] * W[m, c] + B[m]`` (group = 1)::

    strategy          X      W      B      Y
    batch             S(0)   R      R      S(0)
    output channels   R      S(0)   S(0)   S(1)     rank r computes filters [r*M/N, ...)
    input channels    S(1)   S(1)   P      P        sum over ranks of partial convolutions

Under the input-channel split only rank 0 adds the bias (a Partial constant), so the
all-reduce that follows sums it once. Grouped convolutions are split only over output
channels when every rank gets whole groups (``group % N == 0``), with X split to match.
"""

from __future__ import annotations

from sharding.placement import P, R, Shard
from sharding.rules import RuleContext, Strategy, register_rule


@register_rule("Conv")
def conv_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """See the module docstring."""
    x, w = layer.inputs[0], layer.inputs[1]
    b = layer.inputs[2] if len(layer.inputs) > 2 else None
    if x.shape is None or w.shape is None:
        return []
    n = ctx.world_size
    group = int(layer.attr("group", 1))
    bias = () if len(layer.inputs) < 3 else (None if b is None else R,)
    out = []
    if ctx.can_shard(x, 0):
        out.append(Strategy((Shard(0), R) + bias, (Shard(0),), "batch", n))
    if group == 1:
        if ctx.can_shard(w, 0):
            b_out = () if not bias else (None if b is None else Shard(0),)
            out.append(Strategy((R, Shard(0)) + b_out, (Shard(1),), "out-channels", n))
        if ctx.can_shard(w, 1) and ctx.can_shard(x, 1) and (b is None or b.is_constant):
            b_in = () if not bias else (None if b is None else P,)
            out.append(Strategy((Shard(1), Shard(1)) + b_in, (P,), "in-channels", n))
    elif group % n == 0 and ctx.can_shard(w, 0) and ctx.can_shard(x, 1):
        b_out = () if not bias else (None if b is None else Shard(0),)
        out.append(Strategy((Shard(1), Shard(0)) + b_out, (Shard(1),), "groups", n))
    return out

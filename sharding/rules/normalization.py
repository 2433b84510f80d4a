"""Reductions, softmax, normalizations and pooling: shard only dims they do not reduce.

``Y = reduce(X, axes)``, ``softmax(X, axis)``, ``LayerNorm(X)`` over ``[axis:]``: for a dim
``d`` outside the reduced axes, rank r computes its chunk on its own::

    X        scale/bias     Y
    S(d)     R              S(d') (d' = d, or d minus the dropped axes before it)

``ReduceSum``/``ReduceMean`` are linear, so a Partial input stays Partial. ``ReduceSum`` over
a sharded dim gives a Partial output (each rank sums its chunk). Batch/instance norms and
pooling shard the channel dim (their per-channel parameters then split with it, ``S(0)``).
"""

from __future__ import annotations

import numpy as np

from sharding.placement import P, R, Shard
from sharding.rules import RuleContext, Strategy, register_rule
from sharding.rules.layout import _float0

_REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
           "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin")


def _reduce_axes(layer, ctx: RuleContext, rank: int) -> list[int] | None:
    axes = layer.attr("axes", None)
    if axes is None and layer.op_type in ("ArgMax", "ArgMin"):
        axes = [layer.attr("axis", 0)]
    if axes is None and len(layer.inputs) > 1 and layer.inputs[1] is not None:
        v = ctx.value(layer.inputs[1])
        if v is None:
            return None
        axes = np.ravel(v).tolist()
    if axes is None or len(axes) == 0:
        if layer.attr("noop_with_empty_axes", 0):
            return []
        axes = list(range(rank))
    return sorted({int(a) % rank for a in axes})


@register_rule(*_REDUCE)
def reduce_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Reductions: non-reduced dims keep their sharding (see the module docstring)."""
    x = layer.inputs[0]
    if x.shape is None:
        return []
    rank = len(x.shape)
    axes = _reduce_axes(layer, ctx, rank)
    if axes is None:
        return []
    keep = layer.attr("keepdims", 1)
    rest = tuple(None if t is None else R for t in layer.inputs[1:])
    out = []
    for d in range(rank):
        if not ctx.can_shard(x, d):
            continue
        if d in axes:
            if layer.op_type == "ReduceSum" and _float0(layer):
                out.append(Strategy((Shard(d),) + rest, (P,), "partial-sum", ctx.world_size))
            continue
        od = d if keep else d - sum(1 for a in axes if a < d)
        out.append(Strategy((Shard(d),) + rest, (Shard(od),), f"split-{d}", ctx.world_size))
    if layer.op_type in ("ReduceSum", "ReduceMean") and _float0(layer):
        out.append(Strategy((P,) + rest, (P,), "partial", 1))
    return out


def _last_axes_rule(layer, ctx: RuleContext, first_axis: int) -> list[Strategy]:
    x = layer.inputs[0]
    out = []
    for d in range(first_axis):
        if ctx.can_shard(x, d):
            ins = (Shard(d),) + tuple(None if t is None else R for t in layer.inputs[1:])
            outs = tuple(Shard(d) for _ in layer.outputs)
            out.append(Strategy(ins, outs, f"split-{d}", ctx.world_size))
    return out


@register_rule("Softmax", "LogSoftmax", "Hardmax")
def softmax_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Softmax over ``axis`` (opset >= 13) or the flattened ``[axis:]`` (older)."""
    x = layer.inputs[0]
    if x.shape is None:
        return []
    rank = len(x.shape)
    axis = int(layer.attr("axis", -1 if layer.opset >= 13 else 1)) % rank
    if layer.opset < 13:
        return _last_axes_rule(layer, ctx, axis)
    out = _last_axes_rule(layer, ctx, rank)
    return [s for s in out if s.inputs[0].dim != axis]


@register_rule("LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization",
               "SkipSimplifiedLayerNormalization")
def layer_norm_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Norms over ``[axis:]``: the leading dims shard, the (replicated) scale/bias broadcast."""
    x = layer.inputs[0]
    if x.shape is None or layer.op_type.startswith("Skip"):
        return []
    rank = len(x.shape)
    return _last_axes_rule(layer, ctx, int(layer.attr("axis", -1)) % rank)


@register_rule("BatchNormalization", "InstanceNormalization")
def channel_norm_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Per-channel norms (inference): X ``S(1)`` with every (C,) parameter ``S(0)``."""
    x = layer.inputs[0]
    if x.shape is None or len(x.shape) < 2 or not ctx.can_shard(x, 1) or len(layer.outputs) > 1:
        return []
    ins = (Shard(1),) + tuple(None if t is None else Shard(0) for t in layer.inputs[1:])
    return [Strategy(ins, (Shard(1),), "channels", ctx.world_size)]


@register_rule("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
               "GlobalLpPool")
def pool_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Pooling over spatial dims: batch and channel dims shard."""
    x = layer.inputs[0]
    if x.shape is None or len(x.shape) < 3:
        return []
    out = []
    for d in (0, 1):
        if ctx.can_shard(x, d):
            outs = tuple(Shard(d) for _ in layer.outputs)
            out.append(Strategy((Shard(d),), outs, f"split-{d}", ctx.world_size))
    if layer.op_type in ("AveragePool", "GlobalAveragePool") and _float0(layer):
        out.append(Strategy((P,), (P,), "partial", 1))
    return out

"""Layout ops: Transpose, Reshape family, Expand, Slice, Concat, Split, Shape.

Reshape tracks which output dim a sharded input dim becomes. Dims are grouped where the
prefix products of input and output agree, e.g. Llama's head split::

    (B, S, hidden) -> (B, S, H, D):  groups {B}->{B}, {S}->{S}, {hidden}->{H, D}

Sharding a group's outermost input dim over N splits the flattened group into N contiguous
ranges; so does sharding its outermost output dim when that dim is divisible by N. Hence
``S(2)`` on hidden maps to ``S(2)`` on H iff ``H % N == 0`` (else no sharded strategy: the
layer stays replicated). Rank table for hidden=256, H=8, D=32, N=4::

    rank | hidden columns | heads
    r    | [64r, 64r+64)  | [2r, 2r+2)

Reshape and Expand targets name global sizes; their localizers rewrite the sharded entry to
the local size (``H -> H/N``; ``0`` and ``-1`` entries need no change). ``Shape`` of a
sharded tensor would report the local size, so its localizer multiplies that entry by N.
"""

from __future__ import annotations

import numpy as np

from sharding.placement import P, R, Shard
from sharding.rules import RuleContext, Strategy, register_rule


def dim_map(in_shape, out_shape) -> dict[int, int]:
    """Input dim -> output dim where sharding carries across a reshape.

    Args:
        in_shape: Input shape (ints, symbols or None).
        out_shape: Output shape.

    Returns:
        For each group of dims with equal element counts, its outermost non-1 input dim
        mapped to its outermost non-1 output dim. Groups after an unknown dim are omitted.
    """
    if in_shape is None or out_shape is None:
        return {}
    a = [(i, d) for i, d in enumerate(in_shape) if d != 1]
    b = [(j, d) for j, d in enumerate(out_shape) if d != 1]
    mapping: dict[int, int] = {}
    i = j = 0
    while i < len(a) and j < len(b):
        (ia, da), (jb, db) = a[i], b[j]
        if da is None or db is None:
            break
        if da == db:
            mapping[ia] = jb
            i, j = i + 1, j + 1
            continue
        if not (isinstance(da, int) and isinstance(db, int)):
            break
        pa, pb, i0, j0 = da, db, ia, jb
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                if i >= len(a) or not isinstance(a[i][1], int):
                    return mapping
                pa *= a[i][1]
                i += 1
            else:
                if j >= len(b) or not isinstance(b[j][1], int):
                    return mapping
                pb *= b[j][1]
                j += 1
        mapping[i0] = j0
    return mapping


def _reshape_like(layer, ctx: RuleContext, mapping: dict[int, int]) -> list[Strategy]:
    """Strategies carrying ``S(i)`` to ``S(mapping[i])``; inputs past 0 replicated."""
    x, y = layer.inputs[0], layer.outputs[0]
    out = []
    for i, o in mapping.items():
        if ctx.can_shard(x, i) and ctx.can_shard(y, o):
            ins = (Shard(i),) + tuple(None if t is None else R for t in layer.inputs[1:])
            out.append(Strategy(ins, (Shard(o),), f"split-{o}", ctx.world_size))
    if _float0(layer):
        ins = (P,) + tuple(None if t is None else R for t in layer.inputs[1:])
        out.append(Strategy(ins, (P,), "partial", 1))
    return out


def _float0(layer) -> bool:
    t = layer.inputs[0]
    return t is not None and t.dtype is not None and (t.dtype.kind == "f"
                                                      or t.dtype.name == "bfloat16")


@register_rule("Transpose")
def transpose_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """``Y = X.transpose(perm)``: ``S(d) -> S(perm.index(d))``."""
    x = layer.inputs[0]
    if x.shape is None:
        return []
    perm = list(layer.attr("perm", None) or reversed(range(len(x.shape))))
    return _reshape_like(layer, ctx, {d: perm.index(d) for d in range(len(x.shape))})


def _reshape_target(layer, ctx: RuleContext) -> list[int] | None:
    v = ctx.value(layer.inputs[1]) if len(layer.inputs) > 1 else None
    return None if v is None else [int(d) for d in np.asarray(v).reshape(-1)]


def reshape_localizer(lb, layer, strategy: Strategy, ins):
    """Emit the local Reshape with the sharded target entry divided by N."""
    y = strategy.outputs[0]
    if not y.is_shard():
        return None
    target = _reshape_target(layer, lb.ctx)
    if target[y.dim] > 0:
        target[y.dim] //= lb.n
    shape = lb.const(f"{layer.name}.local_shape", np.asarray(target, np.int64))
    return lb.emit(layer, [ins[0], shape])


@register_rule("Reshape", localizer=reshape_localizer)
def reshape_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Reshape with a target known at build time (see the module docstring)."""
    target = _reshape_target(layer, ctx)
    if target is None or layer.attr("allowzero", 0):
        return _reshape_like(layer, ctx, {})
    mapping = {i: o for i, o in dim_map(layer.inputs[0].shape, layer.outputs[0].shape).items()
               if o < len(target) and (target[o] != 0 or i == o)}
    return _reshape_like(layer, ctx, mapping)


@register_rule("Squeeze", "Unsqueeze", "Flatten")
def squeeze_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Shape-only reshapes: the same dim tracking, no target to rewrite."""
    return _reshape_like(layer, ctx, dim_map(layer.inputs[0].shape, layer.outputs[0].shape))


def expand_localizer(lb, layer, strategy: Strategy, ins):
    """Emit the local Expand with the sharded entry set to 1 (the input keeps that dim)."""
    y = strategy.outputs[0]
    if not y.is_shard():
        return None
    target = [int(d) for d in np.asarray(lb.ctx.value(layer.inputs[1])).reshape(-1)]
    k = y.dim - (len(layer.outputs[0].shape) - len(target))
    if k >= 0:
        target[k] = 1
    shape = lb.const(f"{layer.name}.local_shape", np.asarray(target, np.int64))
    return lb.emit(layer, [ins[0], shape])


@register_rule("Expand", localizer=expand_localizer)
def expand_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """``Y = broadcast_to(X, shape)``: shard dims X already has in full."""
    x, y = layer.inputs[0], layer.outputs[0]
    if ctx.value(layer.inputs[1]) is None or x.shape is None or y.shape is None:
        return []
    off = len(y.shape) - len(x.shape)
    mapping = {i: i + off for i in range(len(x.shape)) if x.shape[i] == y.shape[i + off]}
    return _reshape_like(layer, ctx, mapping)


@register_rule("Slice")
def slice_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """``Y = X[starts:ends:steps]`` on ``axes``: other dims keep their sharding."""
    x = layer.inputs[0]
    if x.shape is None:
        return []
    if len(layer.inputs) > 1:
        starts = ctx.value(layer.inputs[1])
        if starts is None:
            return []
        axes_t = layer.inputs[3] if len(layer.inputs) > 3 else None
        axes = ctx.value(axes_t) if axes_t is not None else np.arange(len(np.ravel(starts)))
        if axes is None:
            return []
    else:
        axes = layer.attr("axes", None) or list(range(len(layer.attr("starts", []))))
    sliced = {int(a) % len(x.shape) for a in np.ravel(axes)}
    rank = len(x.shape)
    return _reshape_like(layer, ctx, {d: d for d in range(rank) if d not in sliced})


@register_rule("Concat")
def concat_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Concat on ``axis``: every input sharded the same way on another dim."""
    y = layer.outputs[0]
    if y.shape is None or any(t is None or t.shape is None for t in layer.inputs):
        return []
    axis = int(layer.attr("axis", 0)) % len(y.shape)
    out = []
    for d in range(len(y.shape)):
        if d != axis and all(ctx.can_shard(t, d) for t in layer.inputs):
            out.append(Strategy(tuple(Shard(d) for _ in layer.inputs), (Shard(d),),
                                f"split-{d}", ctx.world_size))
    if _float0(layer):
        out.append(Strategy(tuple(P for _ in layer.inputs), (P,), "partial", 1))
    return out


@register_rule("Split")
def split_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Split on ``axis``: every output keeps the input's sharding of another dim."""
    x = layer.inputs[0]
    if x.shape is None:
        return []
    axis = int(layer.attr("axis", 0)) % len(x.shape)
    out = []
    for d in range(len(x.shape)):
        if d != axis and ctx.can_shard(x, d):
            ins = (Shard(d),) + tuple(None if t is None else R for t in layer.inputs[1:])
            out.append(Strategy(ins, tuple(Shard(d) for _ in layer.outputs), f"split-{d}",
                                ctx.world_size))
    return out


def shape_localizer(lb, layer, strategy: Strategy, ins):
    """``Shape(x_local) * [1, .., N, .., 1]`` gives back the global shape."""
    p = strategy.inputs[0]
    if not p.is_shard():
        return None
    rank = len(layer.inputs[0].shape)
    start = int(layer.attr("start", 0))
    end = int(layer.attr("end", rank))
    start, end = start % rank if start < 0 else min(start, rank), end % rank if end < 0 else \
        min(end, rank)
    mult = np.ones(max(end - start, 0), np.int64)
    if start <= p.dim < end:
        mult[p.dim - start] = lb.n
    local = lb.emit(layer, [ins[0]], out_names=[f"{layer.outputs[0].name}.local"])[0]
    factor = lb.const(f"{layer.name}.global", mult)
    return lb.emit_new("Mul", [local, factor], name=f"{layer.name}.global",
                       out_names=lb.out_names(layer))


@register_rule("Shape", localizer=shape_localizer)
def shape_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """``Shape`` reads any sharded input (its localizer restores the global dims)."""
    x = layer.inputs[0]
    if x.shape is None or not ctx.supported("Mul"):
        return []
    return [Strategy((Shard(d),), (R,), "shape", 1) for d in range(len(x.shape))
            if ctx.can_shard(x, d)]

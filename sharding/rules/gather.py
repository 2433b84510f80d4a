"""Gather (embeddings): shard the table's columns, the indices, or the vocabulary.

``Y = take(data, idx, axis=a)``, ``Y.shape = data[:a] + idx.shape + data[a+1:]``::

    strategy   data      idx    Y                      local work
    columns    S(d!=a)   R      S(d or d+rank(idx)-1)  gather own columns
    indices    R         S(k)   S(a+k)                 gather own rows of idx
    vocab      S(a)      R      P                      rows outside [lo, hi) give 0

Vocab-parallel rank table, vocab V on N ranks (``c = V/N``)::

    rank | table rows    | idx_local = clip(idx - lo, -1, c); row c (and -1) is a zero row
    r    | [r*c, (r+1)*c) |

The zero row appended to the local table makes out-of-range ids read zeros without a mask,
so the localizer needs only Sub, Clip and Gather; the Partial output is all-reduced later.
"""

from __future__ import annotations

import numpy as np

from sharding.placement import P, R, Shard
from sharding.rules import RuleContext, Strategy, register_rule


def gather_localizer(lb, layer, strategy: Strategy, ins):
    """Emit the vocab-parallel gather (other strategies need no rewrite)."""
    if not strategy.outputs[0].is_partial():
        return None
    data, idx = layer.inputs[0], ins[1]
    axis = int(layer.attr("axis", 0)) % len(data.shape)
    c = data.shape[axis] // lb.n
    lo = lb.rank * c
    table = lb.const_slice(data, axis, lo, lo + c, pad_zero_row=True)
    idx_dtype = idx.dtype if idx.dtype is not None else np.dtype(np.int64)
    shifted = lb.emit_new("Sub", [idx, lb.const(f"{layer.name}.lo", np.asarray(lo, idx_dtype))],
                          name=f"{layer.name}.shift")[0]
    clipped = lb.emit_new("Clip", [shifted, lb.const(f"{layer.name}.min",
                                                      np.asarray(-1, idx_dtype)),
                                   lb.const(f"{layer.name}.max", np.asarray(c, idx_dtype))],
                          name=f"{layer.name}.clip")[0]
    return lb.emit(layer, [table, clipped])


@register_rule("Gather", localizer=gather_localizer)
def gather_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """See the module docstring."""
    data, idx = layer.inputs[0], layer.inputs[1]
    if data.shape is None or idx.shape is None:
        return []
    r, q = len(data.shape), len(idx.shape)
    axis = int(layer.attr("axis", 0)) % r
    n = ctx.world_size
    out = []
    for d in range(r):
        if d != axis and ctx.can_shard(data, d):
            od = d if d < axis else d + q - 1
            out.append(Strategy((Shard(d), R), (Shard(od),), "columns", n))
    for k in range(q):
        if ctx.can_shard(idx, k):
            out.append(Strategy((R, Shard(k)), (Shard(axis + k),), "indices", n))
    float_data = data.dtype is not None and (data.dtype.kind == "f"
                                             or data.dtype.name == "bfloat16")
    if (data.is_constant and float_data and ctx.can_shard(data, axis)
            and ctx.supported("Sub") and ctx.supported("Clip")):
        out.append(Strategy((Shard(axis), R), (P,), "vocab", n))
    return out

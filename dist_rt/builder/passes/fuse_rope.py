"""Fuse the exported ``rotate_half`` RoPE pattern into one dist_rt::RotaryHalf layer.

Pattern (HF ``apply_rotary_pos_emb`` as exporters write it; operand order of the Muls and
the Add may be swapped)::

    x1 = Slice(x, [0], [D/2], [-1])      x2 = Slice(x, [D/2], [>= D], [-1])
    Y  = Add(Mul(x, cos), Mul(Concat(Neg(x2), x1, axis=-1), sin))

becomes ``RotaryHalf(x, cos, sin)``: one elementwise pass instead of seven kernels and five
temporaries. Every intermediate must be read only inside the pattern; ``x``'s last dim must
be a known even int, and the Slices must cover exactly its two halves (unit steps).
"""

from __future__ import annotations

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import (
    Matcher,
    add_fused,
    anchors,
    const_value,
    other,
    prune_fused,
)
from dist_rt.network import Layer, Network, Tensor


def _slice_of(m: Matcher, t: Tensor, x: Tensor, d: int) -> tuple[int, int] | None:
    """(start, end) along the last axis when ``t`` is a private unit-step Slice of ``x``."""
    sl = m.producer(t, "Slice")
    if sl is None or sl.inputs[0] is not x or not m.private(t) or len(sl.inputs) < 3:
        return None
    vals = [const_value(sl.inputs[i]) if i < len(sl.inputs) else None for i in range(1, 5)]
    starts, ends, axes, steps = vals
    if starts is None or ends is None or starts.size != 1 or ends.size != 1:
        return None
    if axes is not None and (axes.size != 1 or int(axes.reshape(-1)[0]) not in (-1,
                                                                               len(x.shape) - 1)):
        return None
    if axes is None and len(x.shape) != 1:
        return None
    if steps is not None and (steps.size != 1 or int(steps.reshape(-1)[0]) != 1):
        return None
    start, end = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])
    start = start + d if start < 0 else start
    end = min(end + d if end < 0 else end, d)
    return start, end


def _match(m: Matcher, add: Layer) -> tuple[Tensor, Tensor, Tensor, list[Layer]] | None:
    """(x, cos, sin, pattern layers) when ``add`` ends a rotate_half RoPE, else None."""
    muls = [m.producer(t, "Mul") for t in add.inputs[:2]]
    if None in muls or any(not m.private(t) for t in add.inputs[:2]):
        return None
    for mul_cos, mul_sin in (muls, muls[::-1]):
        for rot in mul_sin.inputs[:2]:
            cat = m.producer(rot, "Concat")
            if cat is None or not m.private(rot) or len(cat.inputs) != 2:
                continue
            neg = m.producer(cat.inputs[0], "Neg")
            if neg is None or not m.private(cat.inputs[0]):
                continue
            x1_t, x2_t = cat.inputs[1], neg.inputs[0]
            sl = m.producer(x1_t, "Slice")
            x = sl.inputs[0] if sl is not None else None
            if x is None or x.shape is None or not x.shape or not isinstance(x.shape[-1], int):
                continue
            d = x.shape[-1]
            if d % 2 or int(cat.attr("axis", 0)) not in (-1, len(x.shape) - 1):
                continue
            if (_slice_of(m, x1_t, x, d) != (0, d // 2)
                    or _slice_of(m, x2_t, x, d) != (d // 2, d)):
                continue
            cos = other(mul_cos, x)
            sin = other(mul_sin, rot)
            if cos is None or sin is None or add.outputs[0].shape != x.shape:
                continue
            layers = [x1_t.producer, x2_t.producer, neg, cat, mul_sin, mul_cos, add]
            return x, cos, sin, layers
    return None


def run(network: Network, state: BuildState) -> str:
    """Replace rotate_half RoPE patterns by dist_rt::RotaryHalf layers.

    Args:
        network: Edited in place.
        state: Build state (unused).

    Returns:
        A summary line.
    """
    m = Matcher(network)
    fused = 0
    for add in anchors(network, "Add"):
        found = _match(m, add)
        if found is None:
            continue
        x, cos, sin, layers = found
        add_fused(network, "RotaryHalf", [x, cos, sin], {}, name=f"{add.name}.rope",
                  outputs=add.outputs[:1], replaces=layers)
        fused += 1
    prune_fused(network, fused)
    return f"{fused} RoPE patterns fused"

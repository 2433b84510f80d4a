"""TensorScatter: write ``update`` into a KV cache along ``axis`` at per-batch offsets."""

from __future__ import annotations

from dist_rt.ops._extra_util import fail, host
from dist_rt.ops._op import SameShapeOp, normalize_axis, register_op


@register_op("TensorScatter", since_opset=24)
class TensorScatter(SameShapeOp):
    """``present = past`` with ``present[b, ..., w[b] + i, ...] = update[b, ..., i, ...]``.

    ``write_indices`` (B,) default to 0; ``mode="circular"`` wraps positions modulo the
    cache length, ``"linear"`` requires them to fit.
    """

    arity = (2, 3)

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        past, update = inputs[0], inputs[1]
        writes = inputs[2] if len(inputs) > 2 else None
        mode = layer.attr("mode", "linear")
        if mode not in ("linear", "circular"):
            raise fail(layer, f"mode {mode!r} is not one of linear, circular")
        axis = normalize_axis(layer, int(layer.attr("axis", -2)), past.ndim)
        if axis == 0 or update.ndim != past.ndim or any(
                u != p for i, (u, p) in enumerate(zip(update.shape, past.shape, strict=True))
                if i != axis) or update.shape[axis] > past.shape[axis]:
            raise fail(layer, f"update of shape {update.shape} does not fit cache "
                              f"{past.shape} along axis {axis}")
        length, seq = past.shape[axis], update.shape[axis]
        starts = [0] * past.shape[0] if writes is None else host(writes).reshape(-1).tolist()
        out = past.copy()
        for b, start in enumerate(starts):
            pos = xp.arange(int(start), int(start) + seq)
            if mode == "circular":
                pos = pos % length
            elif int(start) < 0 or int(start) + seq > length:
                raise fail(layer, f"batch {b}: write index {start} + {seq} exceeds the cache "
                                  f"length {length}")
            index = [slice(None)] * (past.ndim - 1)
            index[axis - 1] = pos  # one array index in out[b]: its dim stays in place
            out[b][tuple(index)] = update[b]
        return [out]

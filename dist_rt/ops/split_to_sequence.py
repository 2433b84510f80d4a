"""SplitToSequence: split a tensor along ``axis`` into a sequence.

``split`` absent: pieces of size 1 (squeezed when ``keepdims=0``); a scalar: pieces of that
size (the last may be smaller); a 1-D tensor: the piece sizes.
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, normalize_axis, register_op


@register_op("SplitToSequence", since_opset=11)
class SplitToSequence(Op):
    """``[x[..., a:b, ...] for each piece]``."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(inputs[0].dtype, None, None, "sequence")]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), x.ndim)
        dim = int(x.shape[axis])
        split = None if len(inputs) < 2 or inputs[1] is None else \
            np.asarray(inputs[1].get() if hasattr(inputs[1], "get") else inputs[1])
        if split is None:
            pieces = [rt.xp.take(x, [i], axis=axis) for i in range(dim)]
            if not int(layer.attr("keepdims", 1)):
                pieces = [rt.xp.squeeze(p, axis=axis) for p in pieces]
            return [pieces]
        if split.ndim == 0:
            size = int(split)
            sizes = [min(size, dim - s) for s in range(0, dim, size)]
        else:
            sizes = [int(s) for s in split]
        if sum(sizes) != dim:
            raise ShapeError(f"layer '{layer.name}' (SplitToSequence): split sizes {sizes} "
                             f"do not add up to dim {dim} of axis {axis}")
        bounds = np.cumsum([0, *sizes])
        index = [slice(None)] * x.ndim
        pieces = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            index[axis] = slice(int(lo), int(hi))
            pieces.append(x[tuple(index)])
        return [pieces]

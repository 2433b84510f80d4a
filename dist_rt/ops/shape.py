"""Shape: the dims of a tensor as a 1-D int64 tensor, optionally sliced by ``start``/``end``."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, check_inputs, register_op
from dist_rt.ops._tensor_util import int_desc


def _bounds(layer, rank: int) -> tuple[int, int]:
    # Opset 15 slicing: negative values count from the end, then clamp to [0, rank].
    start, end = int(layer.attr("start", 0)), layer.attr("end")
    end = rank if end is None else int(end)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return start, end


@register_op("Shape", since_opset=1)
class Shape(Op):
    """``Y = shape(X)[start:end]``; symbolic dims are tracked for downstream shape ops."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        shape = inputs[0].shape
        if shape is None:
            return [int_desc(layer, np.int64, None, (None,))]
        start, end = _bounds(layer, len(shape))
        dims = list(shape[start:end])
        return [int_desc(layer, np.int64, dims, (max(end - start, 0),))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        shape = inputs[0].shape
        start, end = _bounds(layer, len(shape))
        return [rt.xp.asarray(np.asarray(shape[start:end], dtype=np.int64).reshape(-1))]

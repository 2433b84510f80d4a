"""Unique: distinct elements (or slices along ``axis``) with indices, inverse and counts.

Runs on the host with NumPy: CuPy's ``unique`` has no ``axis`` and the outputs' sizes are
data dependent anyway (a device sync either way).
"""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op
from dist_rt.ops._tensor_util import to_numpy


@register_op("Unique", since_opset=11)
class Unique(Op):
    """Outputs ``Y, indices?, inverse_indices?, counts?``; ``sorted`` (default 1) orders
    ``Y`` ascending, else by first occurrence."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        axis = layer.attr("axis")
        if axis is None or x.shape is None:
            y_shape = (None,) if axis is None else None
        else:
            axis = normalize_axis(layer, int(axis), len(x.shape))
            y_shape = x.shape[:axis] + (None,) + x.shape[axis + 1:]
        i64 = np.dtype(np.int64)
        inverse = (None,) if axis is None or x.shape is None else (x.shape[axis],)
        return [TensorDesc(x.dtype, y_shape), TensorDesc(i64, (None,)),
                TensorDesc(i64, inverse), TensorDesc(i64, (None,))][:len(layer.outputs)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = to_numpy(inputs[0])
        axis = layer.attr("axis")
        if axis is not None:
            axis = normalize_axis(layer, int(axis), x.ndim)
        y, first, inverse, counts = np.unique(
            x if axis is not None else x.reshape(-1), return_index=True, return_inverse=True,
            return_counts=True, axis=axis)
        inverse = inverse.reshape(-1)
        if not int(layer.attr("sorted", 1)):
            # Reorder the groups by first occurrence and renumber the inverse accordingly.
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            y = np.take(y, order, axis=axis or 0)
            first, counts, inverse = first[order], counts[order], rank[inverse]
        outs = [y, first, inverse, counts]
        return [rt.xp.asarray(o.astype(np.int64) if i else o)
                for i, o in enumerate(outs[:len(layer.outputs)])]

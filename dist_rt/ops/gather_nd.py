"""GatherND: gather slices of ``data`` addressed by the last dim of ``indices``.

With ``b = batch_dims`` and ``k = indices.shape[-1]``, the output shape is
``indices.shape[:-1] + data.shape[b + k:]``.
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import fmt, here


def _check(layer, data_shape, idx_shape, b: int) -> None:
    if len(idx_shape) < 1 or b >= min(len(data_shape), len(idx_shape)) or b < 0:
        raise ShapeError(f"{here(layer)}batch_dims {b} does not fit data {fmt(data_shape)} "
                         f"and indices {fmt(idx_shape)}")
    k = idx_shape[-1]
    if isinstance(k, int) and k > len(data_shape) - b:
        raise ShapeError(f"{here(layer)}indices {fmt(idx_shape)} address {k} dims, data "
                         f"{fmt(data_shape)} has only {len(data_shape) - b} after batch_dims")


@register_op("GatherND", since_opset=11)
class GatherND(Op):
    """Attributes: ``batch_dims`` (opset 12+, default 0)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        data, idx = inputs
        if data.shape is None or idx.shape is None:
            return [TensorDesc(data.dtype, None)]
        b = int(layer.attr("batch_dims", 0))
        _check(layer, data.shape, idx.shape, b)
        k = idx.shape[-1]
        if not isinstance(k, int):
            return [TensorDesc(data.dtype, None)]
        return [TensorDesc(data.dtype, tuple(idx.shape[:-1]) + tuple(data.shape[b + k:]))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        data, idx = inputs
        b = int(layer.attr("batch_dims", 0))
        _check(layer, data.shape, idx.shape, b)
        k = idx.shape[-1]
        batch = int(np.prod(data.shape[:b], dtype=np.int64))
        flat = data.reshape((batch,) + data.shape[b:])
        coords = xp.asarray(idx).astype(np.int64).reshape(batch, -1, k)
        # Negative coordinates count from the end of their dim.
        dims = xp.asarray(np.asarray(data.shape[b:b + k], dtype=np.int64))
        coords = xp.where(coords < 0, coords + dims, coords)
        rows = xp.arange(batch).reshape(batch, 1)
        picked = flat[(rows,) + tuple(coords[..., j] for j in range(k))]
        return [picked.reshape(idx.shape[:-1] + data.shape[b + k:])]

"""ScatterND: ``out[indices[i]] (op)= updates[i]`` over the leading index tuples.

With ``k = indices.shape[-1]``, ``updates.shape = indices.shape[:-1] + data.shape[k:]``.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import SameShapeOp, register_op
from dist_rt.ops._tensor_util import fmt, here
from dist_rt.ops.scatter_elements import scatter_at


@register_op("ScatterND", since_opset=11)
class ScatterND(SameShapeOp):
    """Inputs ``data, indices, updates``; attribute ``reduction`` (16+: add/mul, 18+: max/min)."""

    arity = (3, 3)

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        data, idx, upd = inputs
        k = idx.shape[-1]
        want = idx.shape[:-1] + data.shape[k:]
        if k > data.ndim or upd.shape != want:
            raise ShapeError(f"{here(layer)}updates have shape {fmt(upd.shape)}, expected "
                             f"{fmt(want)} for data {fmt(data.shape)} and indices "
                             f"{fmt(idx.shape)}")
        coords = xp.asarray(idx).astype("int64").reshape(-1, k)
        dims = xp.asarray(list(data.shape[:k]), dtype="int64")
        coords = xp.where(coords < 0, coords + dims, coords)
        out = data.copy()
        scatter_at(layer, xp, out, tuple(coords[:, j] for j in range(k)),
                   upd.reshape((-1,) + data.shape[k:]))
        return [out]

"""ScatterElements (and the deprecated Scatter): write ``updates`` at ``indices`` along an axis.

``out[..., indices[i, j, k], ...] (op)= updates[i, j, k]`` with ``reduction`` none, add, mul,
max or min; duplicate indices accumulate for the reductions (``ufunc.at``).
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError, UnsupportedOpError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op
from dist_rt.ops._tensor_util import fmt, here, to_numpy
from dist_rt.ops.gather import normalize_indices


def scatter_at(layer, xp, out, index, updates) -> None:
    """``out[index] (reduction)= updates`` in place, accumulating duplicate indices.

    Raises:
        UnsupportedOpError: An unknown reduction.
    """
    reduction = str(layer.attr("reduction", "none"))
    if reduction == "none":
        out[index] = updates
        return
    names = {"add": "add", "mul": "multiply", "max": "maximum", "min": "minimum"}
    ufuncs = {k: getattr(xp, v) for k, v in names.items()}
    if reduction not in ufuncs:
        raise UnsupportedOpError(f"{here(layer)}reduction {reduction!r} is not one of none, "
                                 f"{', '.join(ufuncs)}")
    try:
        ufuncs[reduction].at(out, index, updates)
    except (NotImplementedError, AttributeError, TypeError):
        # CuPy implements ``ufunc.at`` only for some ufuncs (not multiply): reduce on the host.
        host = to_numpy(out)
        # By NumPy name: CuPy's ufuncs call themselves ``cupy_multiply``.
        host_ufunc = getattr(np, names[reduction])
        host_ufunc.at(host, tuple(to_numpy(i) for i in index), to_numpy(updates))
        out[...] = xp.asarray(host)


@register_op("ScatterElements", since_opset=11)
class ScatterElements(Op):
    """Inputs ``data, indices, updates`` (indices and updates of one shape and data's rank)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        data, idx, upd = inputs
        if idx.shape is not None and upd.shape is not None and len(idx.shape) != len(upd.shape):
            raise ShapeError(f"{here(layer)}indices {fmt(idx.shape)} and updates "
                             f"{fmt(upd.shape)} must have the same shape")
        return [TensorDesc(data.dtype, data.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        data, idx, upd = inputs
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), data.ndim)
        if idx.shape != upd.shape or idx.ndim != data.ndim:
            raise ShapeError(f"{here(layer)}indices {fmt(idx.shape)} and updates "
                             f"{fmt(upd.shape)} must share one shape of data's rank "
                             f"{data.ndim}")
        idx = normalize_indices(layer, xp, xp.asarray(idx), data.shape[axis])
        # Full coordinates: an open grid over every dim, with ``indices`` along ``axis``.
        grid = list(xp.ix_(*[xp.arange(n) for n in idx.shape])) if idx.ndim else []
        grid[axis] = idx
        out = data.copy()
        scatter_at(layer, xp, out, tuple(grid), upd)
        return [out]


@register_op("Scatter", since_opset=9)
class Scatter(ScatterElements):
    """The deprecated name of ScatterElements (opsets 9-10, no reduction)."""

"""MaxPool: windowed maximum, with the optional flat argmax ``Indices`` output.

``Indices`` index the unpadded input flattened as (N, C, *spatial): row-major spatial order
for ``storage_order=0``, column-major (first spatial dim fastest) for ``storage_order=1``.
"""

from __future__ import annotations

import itertools

import numpy as np

from dist_rt.ops._op import Op, register_op
from dist_rt.ops._pool import geometry, pool_infer, pooled_windows


def _lowest(dtype):
    """The padding value that never wins a max: the integer minimum, or -inf for floats."""
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


@register_op("MaxPool", since_opset=1)
class MaxPool(Op):
    """ONNX MaxPool (opsets 1-22): ``auto_pad``, ``pads``, ``strides``, ``dilations``,
    ``ceil_mode``, ``storage_order``; outputs Y and optionally Indices (int64)."""

    @classmethod
    def infer(cls, layer, inputs):
        return pool_infer(layer, inputs, len(layer.outputs))

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        spatial = x.shape[2:]
        geo = geometry(layer, spatial)
        cols = pooled_windows(xp, x, geo, _lowest(x.dtype))  # (N, C, K, *out)
        y = cols.max(axis=2)
        if len(layer.outputs) < 2:
            return [y]
        arg = xp.expand_dims(xp.argmax(cols, axis=2), 2)
        nd = len(spatial)
        # flat spatial index of every (tap, output position), on the host then moved over
        coords = np.zeros((int(np.prod(geo.kernel)), *geo.out), dtype=np.int64)
        order = range(nd) if int(layer.attr("storage_order", 0)) == 0 else range(nd - 1, -1, -1)
        for t, offset in enumerate(itertools.product(*(range(k) for k in geo.kernel))):
            flat = np.zeros(tuple(geo.out), dtype=np.int64)
            for i in order:
                pos = (np.arange(geo.out[i]) * geo.strides[i] + offset[i] * geo.dilations[i]
                       - geo.pads[i])
                flat = flat * spatial[i] + pos.reshape((-1,) + (1,) * (nd - 1 - i))
            coords[t] = flat
        coords = xp.asarray(coords)[None, None]
        index = xp.take_along_axis(xp.broadcast_to(coords, cols.shape), arg, axis=2)[:, :, 0]
        size = int(np.prod(spatial))
        base = xp.arange(x.shape[0] * x.shape[1], dtype=np.int64) * size
        index = index + base.reshape((x.shape[0], x.shape[1]) + (1,) * nd)
        return [y, index.astype(np.int64)]

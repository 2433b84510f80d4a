"""AffineGrid: the sampling grid of an affine transform, for GridSample."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._extra_util import fail, host
from dist_rt.ops._op import Op, TensorDesc, check_inputs, const_value, register_op


@register_op("AffineGrid", since_opset=20)
class AffineGrid(Op):
    """theta (N, 2, 3) or (N, 3, 4), size (N, C, H, W) or (N, C, D, H, W) ->
    grid (N, H, W, 2) or (N, D, H, W, 3): ``grid = [x, y, (z), 1] @ theta^T`` over the
    normalized base grid (``align_corners`` picks the pixel-corner or pixel-center one)."""

    shape_inputs = (1,)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        size = const_value(inputs[1])
        shape = None
        if size is not None:
            size = [int(v) for v in np.asarray(size).reshape(-1)]
            shape = (size[0], *size[2:], len(size) - 2)
        return [TensorDesc(inputs[0].dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        theta = inputs[0]
        size = [int(v) for v in host(inputs[1]).reshape(-1)]
        r = len(size) - 2
        if r not in (2, 3) or theta.shape != (size[0], r, r + 1):
            raise fail(layer, f"theta {theta.shape} and size {size} do not fit: expected "
                              f"(N, 2, 3) with (N, C, H, W) or (N, 3, 4) with (N, C, D, H, W)")
        align = bool(layer.attr("align_corners", 0))
        axes = []
        for n in size[2:]:
            if align:
                axes.append(xp.linspace(-1.0, 1.0, n) if n > 1 else xp.zeros(n))
            else:
                axes.append((xp.arange(n) * 2.0 + 1) / n - 1)
        mesh = xp.meshgrid(*axes, indexing="ij")  # spatial order (D), H, W
        ones = xp.ones(mesh[0].shape)
        base = xp.stack([*mesh[::-1], ones], axis=-1).reshape(-1, r + 1)  # x, y, (z), 1
        grid = xp.matmul(base, xp.swapaxes(theta.astype(np.float64), 1, 2))
        return [grid.reshape(size[0], *size[2:], r).astype(theta.dtype)]

"""GridSample: sample X at the normalized locations of ``grid`` (2-D and N-D).

Vectorized over every output location: coordinates are denormalized, brought into range by
``padding_mode`` (border clamps, reflection reflects), then the ``2**r`` (linear) or ``4**r``
(cubic) neighbours are gathered with one advanced index each and blended with separable
weights; nearest rounds half to even like the ONNX reference.
"""

from __future__ import annotations

import itertools

import numpy as np

from dist_rt.ops._extra_util import fail
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op

_MODES = {"bilinear": "linear", "linear": "linear", "nearest": "nearest",
          "bicubic": "cubic", "cubic": "cubic"}


def _reflect(xp, x, lo, hi):
    span = hi - lo
    below, above = x < lo, x > hi
    dx = xp.where(below, lo - x, x - hi)
    n = xp.floor(dx / span)
    r = dx - n * span
    even = (n % 2) == 0
    low_side = xp.where(even, lo + r, hi - r)
    high_side = xp.where(even, hi - r, lo + r)
    return xp.where(below, low_side, xp.where(above, high_side, x))


def _cubic(xp, t):
    a = -0.75
    t = xp.abs(t)
    return [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a]


@register_op("GridSample", since_opset=16)
class GridSample(Op):
    """X (N, C, D1..Dr), grid (N, O1..Or, r) with grid[..., 0] indexing the last dim;
    Y (N, C, O1..Or). Attributes ``mode``, ``padding_mode``, ``align_corners``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        x, grid = inputs
        shape = None
        if x.shape is not None and grid.shape is not None:
            shape = (x.shape[0], x.shape[1], *grid.shape[1:-1])
        return [TensorDesc(x.dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, grid = inputs
        mode = _MODES.get(layer.attr("mode", "linear" if layer.opset >= 20 else "bilinear"))
        pad_mode = layer.attr("padding_mode", "zeros")
        align = bool(layer.attr("align_corners", 0))
        if mode is None or pad_mode not in ("zeros", "border", "reflection"):
            raise fail(layer, f"mode {layer.attr('mode')!r} / padding_mode {pad_mode!r} is "
                              f"not supported")
        dims = x.shape[2:]
        r = len(dims)
        if grid.ndim != r + 2 or grid.shape[-1] != r or grid.shape[0] != x.shape[0]:
            raise fail(layer, f"grid has shape {grid.shape}, expected ({x.shape[0]}, ..., {r}) "
                              f"for input {x.shape}")
        data = x.astype(np.float64)
        lows = [0.0 if align else -0.5 for _ in dims]
        highs = [d - 1.0 if align else d - 0.5 for d in dims]
        coords = []
        for i, d in enumerate(dims):
            g = grid[..., r - 1 - i].astype(np.float64)
            c = ((g + 1) / 2 * (d - 1) if align else ((g + 1) * d - 1) / 2).astype(np.float32)
            c = c.astype(np.float64)
            if mode == "nearest":
                c = xp.rint(c)
            out = (c < lows[i]) | (c > highs[i])
            if pad_mode == "border":
                c = xp.where(out, xp.clip(c, 0, d - 1), c)
            elif pad_mode == "reflection":
                c = xp.where(out, _reflect(xp, c, lows[i], highs[i]), c)
            coords.append(c)
        batch = xp.arange(x.shape[0]).reshape((-1,) + (1,) * r)

        def fetch(index):
            valid = xp.ones(index[0].shape, dtype=bool)
            fixed = []
            for i, (idx, d) in enumerate(zip(index, dims, strict=True)):
                if pad_mode == "zeros":
                    valid &= (idx >= 0) & (idx < d)
                    idx = xp.clip(idx, 0, d - 1)
                elif pad_mode == "border":
                    idx = xp.clip(idx, 0, d - 1)
                else:
                    idx = _reflect(xp, idx.astype(np.float64), lows[i], highs[i])
                    idx = xp.clip(idx.astype(np.int64), 0, d - 1)
                fixed.append(idx.astype(np.int64))
            values = data[(batch, slice(None), *fixed)]  # (N, *out, C)
            return values * valid[..., None]

        if mode == "nearest":
            y = fetch([c.astype(np.int64) for c in coords])
        else:
            base = [xp.floor(c).astype(np.int64) for c in coords]
            frac = [c - xp.floor(c) for c in coords]
            if mode == "linear":
                offsets, weights = (0, 1), [[1 - f, f] for f in frac]
            else:
                offsets, weights = (-1, 0, 1, 2), [_cubic(xp, f) for f in frac]
            y = 0
            for combo in itertools.product(range(len(offsets)), repeat=r):
                w = 1
                for i, k in enumerate(combo):
                    w = w * weights[i][k]
                y = y + w[..., None] * fetch([b + offsets[k] for b, k in zip(base, combo,
                                                                              strict=True)])
        y = xp.moveaxis(y, -1, 1)
        return [xp.ascontiguousarray(y).astype(x.dtype)]

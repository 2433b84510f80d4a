"""DepthToSpace: move ``blocksize**2`` channel groups into spatial blocks (NCHW).

``DCR`` (default) orders the channels depth-column-row, ``CRD`` column-row-depth.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import register_op
from dist_rt.ops._tensor_util import BlockRearrange, dims_product_ratio, here


def _scaled(d, f):
    return d * f if isinstance(d, int) else None


@register_op("DepthToSpace", since_opset=1)
class DepthToSpace(BlockRearrange):
    """``(N, C, H, W) -> (N, C / b**2, H * b, W * b)``."""

    @classmethod
    def out_dims(cls, layer, b, n, c, h, w):
        try:
            c_out = dims_product_ratio([c], [b * b])
        except ValueError:
            raise ShapeError(f"{here(layer)}channels {c} are not divisible by blocksize^2 "
                             f"= {b * b}") from None
        return (n, c_out, _scaled(h, b), _scaled(w, b))

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        b = int(layer.attr("blocksize"))
        n, c, h, w = x.shape
        if c % (b * b):
            raise ShapeError(f"{here(layer)}channels {c} are not divisible by blocksize^2 "
                             f"= {b * b}")
        if str(layer.attr("mode", "DCR")) == "CRD":
            y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        else:
            y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        return [y.reshape(n, c // (b * b), h * b, w * b)]

"""SpaceToDepth: the inverse of DepthToSpace, NCHW; ``mode`` DCR (default) or CRD."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import register_op
from dist_rt.ops._tensor_util import BlockRearrange, dims_product_ratio, fmt, here


@register_op("SpaceToDepth", since_opset=1)
class SpaceToDepth(BlockRearrange):
    """``(N, C, H, W) -> (N, C * b**2, H / b, W / b)``."""

    @classmethod
    def out_dims(cls, layer, b, n, c, h, w):
        try:
            hw = [dims_product_ratio([d], [b]) for d in (h, w)]
        except ValueError:
            raise ShapeError(f"{here(layer)}spatial dims of {fmt((n, c, h, w))} are not "
                             f"divisible by blocksize {b}") from None
        return (n, c * b * b if isinstance(c, int) else None, *hw)

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        b = int(layer.attr("blocksize"))
        n, c, h, w = x.shape
        if h % b or w % b:
            raise ShapeError(f"{here(layer)}spatial dims of {fmt(x.shape)} are not divisible "
                             f"by blocksize {b}")
        y = x.reshape(n, c, h // b, b, w // b, b)
        if str(layer.attr("mode", "DCR")) == "CRD":
            y = y.transpose(0, 1, 3, 5, 2, 4)
        else:
            y = y.transpose(0, 3, 5, 1, 2, 4)
        return [y.reshape(n, c * b * b, h // b, w // b)]

"""Col2Im: rearrange column blocks back into an image, summing overlapping taps."""

from __future__ import annotations

import itertools

import numpy as np

from dist_rt.ops._extra_util import fail, host
from dist_rt.ops._op import Op, TensorDesc, check_inputs, const_value, register_op


@register_op("Col2Im", since_opset=18)
class Col2Im(Op):
    """input (N, C * prod(block), L), image_shape, block_shape -> (N, C, *image_shape);
    the inverse of im2col (see :mod:`dist_rt.ops._window`): tap ``k`` of every window is
    added into a strided slice of the padded image, then the pads are cut off."""

    shape_inputs = (1, 2)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        x, image, block = inputs[0], const_value(inputs[1]), const_value(inputs[2])
        shape = None
        if x.shape is not None and image is not None and block is not None:
            c = x.shape[1] // int(np.prod(block)) if isinstance(x.shape[1], int) else None
            shape = (x.shape[0], c, *[int(v) for v in np.asarray(image).reshape(-1)])
        return [TensorDesc(x.dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        image = [int(v) for v in host(inputs[1]).reshape(-1)]
        block = [int(v) for v in host(inputs[2]).reshape(-1)]
        nd = len(image)
        strides = list(layer.attr("strides", None) or [1] * nd)
        dilations = list(layer.attr("dilations", None) or [1] * nd)
        pads = list(layer.attr("pads", None) or [0] * (2 * nd))
        taps = int(np.prod(block))
        out = [(image[i] + pads[i] + pads[i + nd] - dilations[i] * (block[i] - 1) - 1)
               // strides[i] + 1 for i in range(nd)]
        if x.ndim != 3 or x.shape[1] % taps or x.shape[2] != int(np.prod(out)):
            raise fail(layer, f"input has shape {x.shape}; expected (N, C * {taps}, "
                              f"{int(np.prod(out))}) for image {image}, block {block}")
        n, c = x.shape[0], x.shape[1] // taps
        cols = x.reshape(n, c, taps, *out)
        padded = xp.zeros((n, c, *[image[i] + pads[i] + pads[i + nd] for i in range(nd)]),
                          dtype=x.dtype)
        for k, offset in enumerate(itertools.product(*(range(b) for b in block))):
            index = tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                          for o, d, s, m in zip(offset, dilations, strides, out, strict=True))
            padded[(Ellipsis, *index)] += cols[:, :, k]
        crop = tuple(slice(pads[i], pads[i] + image[i]) for i in range(nd))
        return [xp.ascontiguousarray(padded[(Ellipsis, *crop)])]

"""ConvTranspose: the gradient of Conv with respect to its input (a.k.a. deconvolution).

``full[n, m, i * s + k * d] += sum_c X[n, c, i] * W[c, m, k]`` over every input position ``i``
and kernel tap ``k`` (col2im), then ``Y = full[pads_begin : pads_begin + out]`` (+ bias).
The per-tap scatter-add is one strided slice update per tap, so it runs on NumPy and CuPy.

Pads follow the ONNX reference: explicit ``pads`` (or none with ``auto_pad=NOTSET``) crop
the full result, ``output_shape`` then only fixes the size (zero-filled past the full
result); with ``SAME_UPPER``/``SAME_LOWER`` the pads are derived from ``output_shape``
(default ``input * stride``).
"""

from __future__ import annotations

import itertools

from dist_rt.errors import ShapeError
from dist_rt.ops._op import register_op
from dist_rt.ops._window import ConvLike


def _geometry(layer, spatial, kernel):
    """Return (strides, dilations, full sizes, pads_begin, output sizes)."""
    nd = len(spatial)
    strides = list(layer.attr("strides", None) or [1] * nd)
    dilations = list(layer.attr("dilations", None) or [1] * nd)
    out_pad = list(layer.attr("output_padding", None) or [0] * nd)[:nd]
    pads = layer.attr("pads", None)
    out_shape = layer.attr("output_shape", None)
    auto_pad = layer.attr("auto_pad", "NOTSET")
    if len(strides) != nd or len(dilations) != nd or len(out_pad) != nd:
        raise ShapeError(f"layer '{layer.name}' (ConvTranspose): strides {strides}, dilations "
                         f"{dilations}, output_padding {out_pad} do not fit {nd} spatial dims")
    if out_shape is not None:
        out_shape = list(out_shape)[-nd:]
    full = [strides[i] * (spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
            for i in range(nd)]
    if pads is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is None:
            out_shape = [spatial[i] * strides[i] for i in range(nd)]
        total = [full[i] - out_shape[i] for i in range(nd)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        return strides, dilations, full, begin, out_shape
    pads = list(pads or [0] * (2 * nd))
    if len(pads) != 2 * nd:
        raise ShapeError(f"layer '{layer.name}' (ConvTranspose): pads {pads} do not fit {nd} "
                         f"spatial dims (expected {2 * nd} values)")
    if out_shape is None:
        out_shape = [full[i] - pads[i] - pads[i + nd] for i in range(nd)]
    if any(o <= 0 for o in out_shape):
        raise ShapeError(f"layer '{layer.name}' (ConvTranspose): output spatial shape "
                         f"{out_shape} is empty for input spatial {list(spatial)}")
    return strides, dilations, full, pads[:nd], out_shape


@register_op("ConvTranspose", since_opset=1)
class ConvTranspose(ConvLike):
    """ONNX ConvTranspose: X (N, C, *D), W (C, M/group, *k), optional B (M)."""

    @classmethod
    def out_channels(cls, layer, xs, ws, group):
        return ws[1] * group if ws is not None and isinstance(ws[1], int) else None

    @classmethod
    def out_spatial(cls, layer, spatial, kernel):
        return _geometry(layer, spatial, kernel)[4]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, w, bias, group = cls.operands(layer, inputs)
        n, c = x.shape[:2]
        if w.shape[0] != c or c % group:
            raise ShapeError(f"layer '{layer.name}' (ConvTranspose): input {tuple(x.shape)} "
                             f"and weight {tuple(w.shape)} do not fit group={group} (weight "
                             f"dim 0 must equal the {c} input channels)")
        mg, kernel = w.shape[1], list(w.shape[2:])
        nd, cg, taps = len(kernel), c // group, 1
        for k in kernel:
            taps *= k
        strides, dilations, full, begin, out = _geometry(layer, x.shape[2:], kernel)
        # cols[n, g, (m, k), i] = sum_c W[g, c, (m, k)] * X[n, g, c, i]
        wmat = w.reshape(group, cg, mg * taps).transpose(0, 2, 1)
        cols = xp.matmul(wmat, x.reshape(n, group, cg, -1))
        cols = cols.reshape(n, group * mg, taps, *x.shape[2:])
        # The buffer covers the full result and the output window, which may stick out of
        # it on either side (negative derived pads, output_shape larger than full).
        lo = [min(0, b) for b in begin]
        size = [max(f, b + o) - lw for f, b, o, lw in zip(full, begin, out, lo, strict=True)]
        buf = xp.zeros((n, group * mg, *size), dtype=cols.dtype)
        for t, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
            index = tuple(slice(o * d - lw, o * d - lw + (i - 1) * s + 1, s) for o, d, s, i, lw
                          in zip(offset, dilations, strides, x.shape[2:], lo, strict=True))
            buf[(Ellipsis, *index)] += cols[:, :, t]
        crop = tuple(slice(b - lw, b - lw + o) for b, o, lw in zip(begin, out, lo, strict=True))
        y = buf[(Ellipsis, *crop)]
        if bias is not None:
            y = y + bias.reshape((group * mg,) + (1,) * nd)
        return [y.astype(x.dtype, copy=False)]

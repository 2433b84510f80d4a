"""CenterCropPad: crop or zero-pad each of ``axes`` to the target size, centred.

Cropping drops ``(dim - size) // 2`` elements at the start; padding adds ``(size - dim) // 2``
at the start (the odd one goes to the end), as in the ONNX reference.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import here, host_ints, known_ints, normalize_axes


def _axes(layer, rank: int, n: int) -> list[int]:
    axes = layer.attr("axes")
    axes = list(range(rank)) if axes is None else [int(a) for a in axes]
    axes = normalize_axes(layer, axes, rank)
    if len(axes) != n:
        raise ShapeError(f"{here(layer)}shape has {n} entries, expected one per axis {axes}")
    return axes


@register_op("CenterCropPad", since_opset=18)
class CenterCropPad(Op):
    """Inputs ``input_data, shape``; attribute ``axes`` (default all)."""

    shape_inputs = (1,)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        x = inputs[0]
        sizes = known_ints(layer, 1, inputs)
        if x.shape is None:
            return [TensorDesc(x.dtype, None)]
        if sizes is None:
            return [TensorDesc(x.dtype, (None,) * len(x.shape))]
        out = list(x.shape)
        for a, s in zip(_axes(layer, len(out), len(sizes)), sizes, strict=True):
            out[a] = s
        return [TensorDesc(x.dtype, tuple(out))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        sizes = host_ints(inputs[1])
        crop = [slice(None)] * x.ndim
        pads = [(0, 0)] * x.ndim
        for a, s in zip(_axes(layer, x.ndim, len(sizes)), sizes, strict=True):
            d = x.shape[a]
            if s < d:
                start = (d - s) // 2
                crop[a] = slice(start, start + s)
            elif s > d:
                pads[a] = ((s - d) // 2, s - d - (s - d) // 2)
        return [xp.pad(x[tuple(crop)], pads)]

"""Split: cut a tensor along ``axis`` into parts.

Part sizes come from the ``split`` attribute (opset < 13) or input (13+); else from
``num_outputs`` (opset 18: chunks of ``ceil(n / num_outputs)``, the last one smaller); else
the dim is divided evenly among the outputs.
"""

from __future__ import annotations

import math

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op
from dist_rt.ops._tensor_util import here, host_ints, known_ints


def split_sizes(layer, dim: int | str | None, sizes: list[int] | None, n_out: int):
    """Sizes of the parts of a dim of size ``dim`` (None entries when unknown).

    Raises:
        ShapeError: Sizes do not add up to ``dim`` or do not match the number of outputs.
    """
    if sizes is not None:
        if len(sizes) != n_out:
            raise ShapeError(f"{here(layer)}split {sizes} has {len(sizes)} parts, the layer has "
                             f"{n_out} outputs")
        if isinstance(dim, int) and sum(sizes) != dim:
            raise ShapeError(f"{here(layer)}split {sizes} sums to {sum(sizes)}, expected the "
                             f"axis size {dim}")
        return list(sizes)
    if not isinstance(dim, int):
        return [None] * n_out
    num = layer.attr("num_outputs")
    if num is not None:
        num = int(num)
        if num != n_out:
            raise ShapeError(f"{here(layer)}num_outputs {num} differs from the {n_out} outputs")
        chunk = math.ceil(dim / num)
        parts = [min(chunk, max(dim - i * chunk, 0)) for i in range(num)]
        return parts
    if dim % n_out:
        raise ShapeError(f"{here(layer)}axis size {dim} does not split evenly into {n_out} "
                         f"outputs; give 'split' sizes")
    return [dim // n_out] * n_out


@register_op("Split", since_opset=1)
class Split(Op):
    """Inputs ``input, split?``; attributes ``axis``, ``split`` (< 13), ``num_outputs``."""

    @classmethod
    def _sizes(cls, layer, inputs, host: bool):
        if layer.attr("split") is not None:
            return [int(s) for s in layer.attr("split")], True
        if len(inputs) > 1 and inputs[1] is not None:
            return (host_ints(inputs[1]) if host else known_ints(layer, 1, inputs)), True
        return None, False

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 2)
        x = inputs[0]
        n_out = len(layer.outputs)
        if x.shape is None:
            return [TensorDesc(x.dtype, None)] * n_out
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), len(x.shape))
        sizes, given = cls._sizes(layer, inputs, host=False)
        if given and sizes is None:
            parts = [None] * n_out
        else:
            parts = split_sizes(layer, x.shape[axis], sizes, n_out)
        return [TensorDesc(x.dtype, x.shape[:axis] + (p,) + x.shape[axis + 1:]) for p in parts]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), x.ndim)
        sizes, _ = cls._sizes(layer, inputs, host=True)
        parts = split_sizes(layer, x.shape[axis], sizes, len(layer.outputs))
        outs, start = [], 0
        for p in parts:
            index = [slice(None)] * x.ndim
            index[axis] = slice(start, start + p)
            outs.append(x[tuple(index)].copy())
            start += p
        return outs

"""BitCast: reinterpret the bits of a tensor as another type of the same width."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._cast import target_dtype
from dist_rt.ops._extra_util import fail
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


def _check(layer, src: np.dtype, dst: np.dtype) -> None:
    if src.kind == "O" or dst.kind == "O":
        raise fail(layer, "BitCast from or to string is not supported")
    if src.itemsize != dst.itemsize:
        raise fail(layer, f"input {src} has {src.itemsize * 8} bits, target {dst} has "
                          f"{dst.itemsize * 8}; they must be equal")


@register_op("BitCast", since_opset=26)
class BitCast(Op):
    """``Y = reinterpret_cast<to>(X)``: same shape, same bits, attribute ``to``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        dst = target_dtype(layer, layer.attr("to"))
        if inputs[0].dtype is not None:
            _check(layer, np.dtype(inputs[0].dtype), dst)
        return [TensorDesc(dst, inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        dst = target_dtype(layer, layer.attr("to"))
        _check(layer, x.dtype, dst)
        return [(x if x.flags.c_contiguous else x.copy()).view(dst)]

"""Shared body of the window-function ops (Hann, Hamming, Blackman)."""

from __future__ import annotations

import math

import numpy as np

from dist_rt.ops._cast import target_dtype
from dist_rt.ops._extra_util import fail, scalar
from dist_rt.ops._op import Op, TensorDesc, check_inputs, const_value


class WindowOp(Op):
    """``Y[n] = sum_k coeffs[k] * cos(2 pi k n / N')`` with ``N' = size`` (periodic) or
    ``size - 1`` (symmetric); ``output_datatype`` (default float) picks Y's type."""

    shape_inputs = (0,)
    coeffs: tuple[float, ...] = ()

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        size = const_value(inputs[0])
        dtype = target_dtype(layer, layer.attr("output_datatype", 1))
        return [TensorDesc(dtype, None if size is None else (int(np.asarray(size)),))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        size = int(scalar(inputs[0]))
        if size < 0:
            raise fail(layer, f"size {size} must be >= 0")
        denom = size if layer.attr("periodic", 1) else size - 1
        n = xp.arange(size, dtype=np.float64)
        y = xp.zeros(size, dtype=np.float64)
        for k, a in enumerate(cls.coeffs):
            y = y + a * xp.cos(2 * math.pi * k * n / denom) if denom else y + a
        return [y.astype(target_dtype(layer, layer.attr("output_datatype", 1)))]

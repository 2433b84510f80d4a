"""Dropout: ``Y = X`` and an all-True mask in inference (the default).

In training mode (opset 12+ ``training_mode`` input) with a ratio above 0, elements are kept
with probability ``1 - ratio`` and scaled by ``1 / (1 - ratio)``. The mask is drawn on the
host with NumPy's ``RandomState(seed)``, the generator the ONNX reference uses, so a given
``seed`` reproduces the reference on every backend (CuPy's generators give other streams).
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import here, to_numpy


@register_op("Dropout", since_opset=1)
class Dropout(Op):
    """Inputs ``data, ratio?, training_mode?``; outputs ``output, mask?``; attribute ``seed``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 3)
        x = inputs[0]
        outs = [TensorDesc(x.dtype, x.shape)]
        if len(layer.outputs) > 1:
            outs.append(TensorDesc(np.dtype(np.bool_), x.shape))
        return outs

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        training = len(inputs) > 2 and inputs[2] is not None and bool(to_numpy(inputs[2]))
        ratio = float(to_numpy(inputs[1])) if len(inputs) > 1 and inputs[1] is not None \
            else float(layer.attr("ratio", 0.5))
        if not 0.0 <= ratio < 1.0:
            raise ShapeError(f"{here(layer)}ratio must be in [0, 1), got {ratio}")
        if not training or ratio == 0.0:
            outs = [x.copy(), xp.ones(x.shape, dtype=bool)]
        else:
            seed = layer.attr("seed")
            keep = np.random.RandomState(seed).uniform(0.0, 1.0, x.shape) >= ratio
            mask = xp.asarray(keep)
            outs = [(mask * x * (1.0 / (1.0 - ratio))).astype(x.dtype), mask]
        return outs[:len(layer.outputs)]

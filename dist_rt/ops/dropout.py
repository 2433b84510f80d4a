"""Dropout, inference semantics: ``Y = X`` and an all-True mask.

Training mode with a non-zero ratio draws random numbers; an engine is an inference engine,
so that case is rejected rather than silently returning X.
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import UnsupportedOpError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import here, to_numpy


@register_op("Dropout", since_opset=1)
class Dropout(Op):
    """Inputs ``data, ratio?, training_mode?`` (opset 12+); outputs ``output, mask?``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 3)
        x = inputs[0]
        outs = [TensorDesc(x.dtype, x.shape, x.value)]
        if len(layer.outputs) > 1:
            outs.append(TensorDesc(np.dtype(np.bool_), x.shape))
        return outs

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        training = bool(to_numpy(inputs[2])) if len(inputs) > 2 and inputs[2] is not None \
            else False
        ratio = float(to_numpy(inputs[1])) if len(inputs) > 1 and inputs[1] is not None \
            else float(layer.attr("ratio", 0.5))
        if training and ratio != 0.0:
            raise UnsupportedOpError(f"{here(layer)}training_mode=True with ratio {ratio} is "
                                     f"random; only inference (or ratio 0) is supported")
        outs = [x.copy()]
        if len(layer.outputs) > 1:
            outs.append(rt.xp.ones(x.shape, dtype=bool))
        return outs

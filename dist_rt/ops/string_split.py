"""StringSplit: split each string on ``delimiter`` (whitespace runs when absent or empty).

Outputs ``Y`` of shape ``X.shape + (max pieces,)`` padded with ``""``, and ``Z`` (int64,
``X.shape``) the number of pieces of each string. ``maxsplit`` caps the splits.
"""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._strings import STRING, host_strings, strings_like


@register_op("StringSplit", since_opset=20)
class StringSplit(Op):
    """``[s.split(delimiter, maxsplit) for s in X]``, padded."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        shape = inputs[0].shape
        return [TensorDesc(STRING, None if shape is None else (*shape, None)),
                TensorDesc(np.dtype(np.int64), shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = host_strings(inputs[0])
        delimiter = layer.attr("delimiter") or None
        maxsplit = layer.attr("maxsplit")
        maxsplit = -1 if maxsplit is None else int(maxsplit)
        pieces = [str(s).split(delimiter, maxsplit) for s in x.flat]
        width = max((len(p) for p in pieces), default=0)
        flat = [w for p in pieces for w in p + [""] * (width - len(p))]
        counts = np.asarray([len(p) for p in pieces], dtype=np.int64).reshape(x.shape)
        return [strings_like((*x.shape, width), flat), counts]

"""RegexFullMatch: whether each string fully matches ``pattern``.

ONNX specifies RE2 syntax; Python's ``re`` accepts the RE2 subset these models use.
"""

from __future__ import annotations

import re

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._strings import host_strings


@register_op("RegexFullMatch", since_opset=20)
class RegexFullMatch(Op):
    """``y[i] = re.fullmatch(pattern, x[i]) is not None`` (bool, host)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        return [TensorDesc(np.dtype(np.bool_), inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        try:
            pattern = re.compile(str(layer.attr("pattern", "")))
        except re.error as exc:
            raise ShapeError(f"layer '{layer.name}' (RegexFullMatch): invalid pattern "
                             f"{layer.attr('pattern')!r}: {exc}") from None
        x = host_strings(inputs[0])
        out = np.frompyfunc(lambda s: pattern.fullmatch(str(s)) is not None, 1, 1)(x)
        return [np.asarray(out, dtype=np.bool_).reshape(x.shape)]

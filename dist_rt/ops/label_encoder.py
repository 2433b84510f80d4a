"""LabelEncoder (ai.onnx.ml): map each key to its value, unknown keys to the default.

Keys/values come from ``keys_{strings,int64s,floats,tensor}`` and
``values_{strings,int64s,floats,tensor}``; defaults ``default_string`` (``"_Unused"``),
``default_int64`` (-1), ``default_float`` (-0.0) or ``default_tensor``. A dictionary lookup
per element, on the host (string keys have no device form).
"""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


def _table(layer, prefix: str) -> tuple[list, np.dtype | None]:
    for suffix, dtype in (("strings", object), ("int64s", np.int64), ("floats", np.float32)):
        value = layer.attr(f"{prefix}_{suffix}")
        if value is not None:
            return list(value), np.dtype(dtype)
    tensor = layer.attr(f"{prefix}_tensor")
    if tensor is not None:
        return np.asarray(tensor).reshape(-1).tolist(), np.asarray(tensor).dtype
    raise ShapeError(f"layer '{layer.name}' (LabelEncoder): no {prefix}_* attribute")


def _default(layer, dtype: np.dtype):
    tensor = layer.attr("default_tensor")
    if tensor is not None:
        return np.asarray(tensor).reshape(-1)[0]
    if dtype.kind == "O":
        return layer.attr("default_string", "_Unused")
    if dtype.kind in "iu":
        return layer.attr("default_int64", -1)
    return layer.attr("default_float", -0.0)


@register_op("LabelEncoder", since_opset=1, domain="ai.onnx.ml")
class LabelEncoder(Op):
    """``y[i] = table.get(x[i], default)``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        return [TensorDesc(_table(layer, "values")[1], inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        keys, _ = _table(layer, "keys")
        values, dtype = _table(layer, "values")
        if len(keys) != len(values):
            raise ShapeError(f"layer '{layer.name}' (LabelEncoder): {len(keys)} keys but "
                             f"{len(values)} values")
        table = dict(zip(keys, values, strict=True))
        default = _default(layer, dtype)
        x = inputs[0].get() if hasattr(inputs[0], "get") else np.asarray(inputs[0])
        out = np.empty(x.size, dtype=dtype)
        out[:] = [table.get(k.item() if isinstance(k, np.generic) else k, default)
                  for k in x.reshape(-1)]
        out = out.reshape(x.shape)
        return [out if dtype.kind == "O" else rt.xp.asarray(out)]

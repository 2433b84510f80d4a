"""Constant: a tensor given by exactly one of its value attributes."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError, UnsupportedOpError
from dist_rt.ops._op import Op, TensorDesc, register_op
from dist_rt.ops._tensor_util import here, int_desc

_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
          "value_strings", "sparse_value")


def constant_value(layer) -> np.ndarray:
    """The value of a Constant layer as a NumPy array.

    Raises:
        ShapeError: No value attribute or more than one.
        UnsupportedOpError: ``sparse_value``.
    """
    given = [a for a in _ATTRS if layer.attr(a) is not None]
    if len(given) != 1:
        raise ShapeError(f"{here(layer)}needs exactly one of {', '.join(_ATTRS)}, got "
                         f"{given or 'none'}")
    name, value = given[0], layer.attr(given[0])
    if name == "value":
        return np.asarray(value)
    if name in ("value_float", "value_floats"):
        return np.asarray(value, dtype=np.float32)
    if name in ("value_int", "value_ints"):
        return np.asarray(value, dtype=np.int64)
    if name in ("value_string", "value_strings"):
        return np.asarray(value, dtype=object)
    raise UnsupportedOpError(f"{here(layer)}attribute 'sparse_value' is not supported")


@register_op("Constant", since_opset=1)
class Constant(Op):
    """No inputs; one output holding the attribute's value."""

    @classmethod
    def infer(cls, layer, inputs):
        value = constant_value(layer)
        if value.dtype.kind in "iu" and value.ndim <= 1:
            # Records the elements for shape tracking as well as the value.
            return [int_desc(layer, value.dtype, value.reshape(-1).tolist(), value.shape)]
        return [TensorDesc(value.dtype, tuple(value.shape), value)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        value = constant_value(layer)
        return [value.copy() if value.dtype == object else rt.xp.asarray(value)]

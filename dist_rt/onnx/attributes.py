"""Conversion of ONNX ``AttributeProto`` values to plain Python/NumPy values."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import AttributeProto, helper, numpy_helper

from dist_rt.errors import UnsupportedOpError


def attribute_value(attr: AttributeProto, node_name: str = "", op_type: str = "") -> Any:
    """Return the Python value of an attribute.

    ints/floats stay scalars, lists become lists, strings become ``str``, tensors become
    NumPy arrays. Graph attributes (If/Loop/Scan bodies) are returned as ``GraphProto`` and
    rejected by the ops that would need them.

    Raises:
        UnsupportedOpError: Sparse tensors and type protos.
    """
    if attr.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if attr.type == AttributeProto.TENSORS:
        return [numpy_helper.to_array(t) for t in attr.tensors]
    if attr.type in (AttributeProto.SPARSE_TENSOR, AttributeProto.SPARSE_TENSORS,
                     AttributeProto.TYPE_PROTO, AttributeProto.TYPE_PROTOS):
        raise UnsupportedOpError(f"node '{node_name}' ({op_type}): attribute '{attr.name}' of "
                                 f"type {AttributeProto.AttributeType.Name(attr.type)} is not "
                                 f"supported")
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value

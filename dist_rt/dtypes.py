"""Data types: NumPy dtypes are the IR's dtypes; this maps them to ONNX and back.

bfloat16 and the float8 types come from ``ml_dtypes`` (a dependency of onnx), so a bf16
tensor is an ordinary NumPy array on the CPU backend.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import TensorProto

from dist_rt.errors import ModelError

bfloat16 = np.dtype(ml_dtypes.bfloat16)

_ONNX_TO_NP: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.BFLOAT16: bfloat16,
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.BOOL: np.dtype(np.bool_),
    TensorProto.STRING: np.dtype(object),
    TensorProto.FLOAT8E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    TensorProto.FLOAT8E5M2: np.dtype(ml_dtypes.float8_e5m2),
    TensorProto.FLOAT8E4M3FNUZ: np.dtype(ml_dtypes.float8_e4m3fnuz),
    TensorProto.FLOAT8E5M2FNUZ: np.dtype(ml_dtypes.float8_e5m2fnuz),
    TensorProto.FLOAT8E8M0: np.dtype(ml_dtypes.float8_e8m0fnu),
    TensorProto.FLOAT4E2M1: np.dtype(ml_dtypes.float4_e2m1fn),
    # Sub-byte integers: ml_dtypes stores one element per byte (itemsize 1), unpacked.
    TensorProto.INT4: np.dtype(ml_dtypes.int4),
    TensorProto.UINT4: np.dtype(ml_dtypes.uint4),
    TensorProto.INT2: np.dtype(ml_dtypes.int2),
    TensorProto.UINT2: np.dtype(ml_dtypes.uint2),
}
_NP_TO_ONNX: dict[np.dtype, int] = {v: k for k, v in _ONNX_TO_NP.items()}

#: Names used in plan files, CLI flags and reports.
_NAMES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32), "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16), "bfloat16": bfloat16,
    "int8": np.dtype(np.int8), "int16": np.dtype(np.int16), "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64), "uint8": np.dtype(np.uint8), "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32), "uint64": np.dtype(np.uint64), "bool": np.dtype(np.bool_),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "float8_e8m0fnu": np.dtype(ml_dtypes.float8_e8m0fnu),
    "float4_e2m1fn": np.dtype(ml_dtypes.float4_e2m1fn),
    "int4": np.dtype(ml_dtypes.int4), "uint4": np.dtype(ml_dtypes.uint4),
    "int2": np.dtype(ml_dtypes.int2), "uint2": np.dtype(ml_dtypes.uint2),
    # ONNX strings: NumPy object arrays of str (host only; plan files refuse them as weights).
    "string": np.dtype(object),
}
_DTYPE_TO_NAME = {v: k for k, v in _NAMES.items()}

FLOAT_TYPES = frozenset({np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16),
                         bfloat16})


def from_onnx(elem_type: int) -> np.dtype:
    """Return the NumPy dtype of an ONNX ``TensorProto.DataType`` value.

    Raises:
        ModelError: The ONNX type has no NumPy equivalent here.
    """
    try:
        return _ONNX_TO_NP[elem_type]
    except KeyError:
        name = TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() \
            else str(elem_type)
        raise ModelError(f"ONNX data type {name} is not supported") from None


def to_onnx(dtype: np.dtype | type) -> int:
    """Return the ONNX ``TensorProto.DataType`` value of a NumPy dtype."""
    dt = np.dtype(dtype)
    try:
        return _NP_TO_ONNX[dt]
    except KeyError:
        raise ModelError(f"dtype {dt} has no ONNX equivalent") from None


def name_of(dtype: np.dtype | type) -> str:
    """Return the canonical name of a dtype (``"float16"``, ``"bfloat16"``...)."""
    dt = np.dtype(dtype)
    try:
        return _DTYPE_TO_NAME[dt]
    except KeyError:
        raise ModelError(f"dtype {dt} is not supported") from None


def from_name(name: str) -> np.dtype:
    """Return the dtype called ``name`` (as written by :func:`name_of`).

    Raises:
        ModelError: Unknown name.
    """
    aliases = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16",
               "float": "float32", "double": "float64"}
    key = aliases.get(name, name)
    try:
        return _NAMES[key]
    except KeyError:
        raise ModelError(f"unknown dtype name {name!r}; expected one of "
                         f"{sorted(_NAMES)}") from None


def is_float(dtype: np.dtype) -> bool:
    """True for the floating-point dtypes the engine computes in."""
    return np.dtype(dtype) in FLOAT_TYPES

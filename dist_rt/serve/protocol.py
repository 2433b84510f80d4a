"""The KServe v2 inference protocol (Triton's): JSON tensors and the binary-data extension.

An infer request body is a JSON object, optionally followed by raw tensor bytes. When the
``Inference-Header-Content-Length: L`` header is present, the first ``L`` bytes are the JSON
and the rest are the binary buffers of the inputs whose ``parameters.binary_data_size`` is
set, in input order::

    {"id": "42", "inputs": [{"name": "input_ids", "shape": [1, 8], "datatype": "INT64",
                              "parameters": {"binary_data_size": 64}}],
     "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]}<64 raw bytes>

The response mirrors it: outputs asked for with ``binary_data`` (or all of them with the
request parameter ``binary_data_output``, which ``tritonclient`` sets when no outputs are
named) carry ``parameters.binary_data_size`` and their bytes follow the JSON. Everything here
is pure (bytes in, arrays out and back), so it is tested without a server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import InputError

#: Header naming the size of the JSON part of a binary request or response.
HEADER_LENGTH = "Inference-Header-Content-Length"

_DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BF16": dtypes.bfloat16,
}
_NAMES = {v: k for k, v in _DATATYPES.items()}

Binding = tuple[str, np.dtype, tuple]


class ModelNotFoundError(InputError):
    """The request names a model this server does not hold (HTTP 404)."""


def datatype_name(dtype: np.dtype) -> str:
    """KServe name of a NumPy dtype (``int64`` -> ``"INT64"``).

    Raises:
        InputError: The dtype has no KServe name (strings are not served).
    """
    try:
        return _NAMES[np.dtype(dtype)]
    except KeyError:
        raise InputError(f"dtype {np.dtype(dtype)} has no KServe v2 datatype") from None


def tensor_metadata(bindings: Sequence[Binding]) -> list[dict[str, Any]]:
    """``[{"name", "datatype", "shape"}]`` with -1 for every symbolic or unknown dim."""
    return [{"name": name, "datatype": datatype_name(dtype),
             "shape": [d if isinstance(d, int) else -1 for d in shape]}
            for name, dtype, shape in bindings]


@dataclass
class InferRequest:
    """A parsed infer request.

    Attributes:
        id: The client's request id ("" when absent); echoed in the response.
        inputs: Input name -> array (shapes and dtypes as sent, not yet checked against the
            engine's dims).
        outputs: Output name -> True when it must come back as binary data, in response
            order (every output when the request names none).
    """

    id: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, bool] = field(default_factory=dict)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        size = int(header_length)
    except ValueError:
        raise InputError(f"{HEADER_LENGTH} header {header_length!r} is not an integer") from None
    if not 0 <= size <= len(body):
        raise InputError(f"{HEADER_LENGTH} is {size} but the body has {len(body)} bytes")
    return body[:size], memoryview(body)[size:]


def _load_json(text: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"malformed JSON in the request body: {exc}") from None
    if not isinstance(obj, dict):
        raise InputError(f"the request body must be a JSON object, got {type(obj).__name__}")
    return obj


def _shape(spec: Mapping[str, Any], name: str) -> tuple[int, ...]:
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(f"input '{name}': 'shape' must be a list of non-negative integers, "
                         f"got {shape!r}")
    return tuple(shape)


def _input_array(spec: Mapping[str, Any], binary: memoryview, offset: int,
                 expected: np.dtype) -> tuple[np.ndarray, int]:
    """One input's array and the binary offset after it."""
    name = spec["name"]
    shape = _shape(spec, name)
    datatype = spec.get("datatype")
    if datatype not in _DATATYPES:
        raise InputError(f"input '{name}': datatype {datatype!r} is not supported; expected "
                         f"{datatype_name(expected)}")
    dtype = _DATATYPES[datatype]
    if dtype != expected:
        raise InputError(f"input '{name}': datatype {datatype}, expected "
                         f"{datatype_name(expected)}")
    count = math.prod(shape)
    params = spec.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize:
            raise InputError(f"input '{name}': binary_data_size {size!r}, expected "
                             f"{count * dtype.itemsize} bytes for shape {list(shape)} {datatype}")
        if offset + size > len(binary):
            raise InputError(f"input '{name}': needs {size} binary bytes at offset {offset}, "
                             f"the body has {len(binary) - offset} left")
        # Copy: the array outlives the request body and is pickled to the other ranks.
        data = np.frombuffer(binary[offset:offset + size], dtype=dtype).copy()
        return data.reshape(shape), offset + size
    if "data" not in spec:
        raise InputError(f"input '{name}': no 'data' and no binary_data_size parameter")
    try:
        data = np.asarray(spec["data"], dtype=np.float32 if dtype == dtypes.bfloat16 else dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"input '{name}': 'data' is not a list of {datatype}: {exc}") from None
    if data.size != count:
        raise InputError(f"input '{name}': 'data' has {data.size} elements, shape {list(shape)} "
                         f"needs {count}")
    return data.astype(dtype, copy=False).reshape(shape), offset


def parse_infer_request(body: bytes, header_length: str | None, inputs: Sequence[Binding],
                        outputs: Sequence[Binding]) -> InferRequest:
    """Parse an infer request body against the model's bindings.

    Args:
        body: The whole HTTP body.
        header_length: The ``Inference-Header-Content-Length`` header (None when absent).
        inputs: The model's input bindings (names, dtypes) to check names and datatypes.
        outputs: The model's output bindings, to check the requested output names.

    Returns:
        The parsed request (shapes still to be checked by the engine).

    Raises:
        InputError: Malformed JSON, unknown/missing/duplicate names, wrong datatypes, data
            that does not match its shape, binary sizes that do not add up.
    """
    text, binary = _split_body(body, header_length)
    obj = _load_json(text)
    request_id = obj.get("id", "")
    if not isinstance(request_id, str):
        raise InputError(f"'id' must be a string, got {request_id!r}")
    specs = obj.get("inputs")
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise InputError("the request needs 'inputs': a list of tensor objects")
    want = {name: dtype for name, dtype, _ in inputs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        name = spec.get("name")
        if name not in want:
            raise InputError(f"unknown input {name!r}; the model's inputs are {list(want)}")
        if name in feeds:
            raise InputError(f"input '{name}' is given twice")
        feeds[name], offset = _input_array(spec, binary, offset, want[name])
    missing = [n for n in want if n not in feeds]
    if missing:
        raise InputError(f"missing input(s) {missing}; the model's inputs are {list(want)}")
    if offset != len(binary):
        raise InputError(f"{len(binary) - offset} binary bytes after the JSON are not claimed "
                         f"by any input's binary_data_size")
    return InferRequest(request_id, feeds, _requested_outputs(obj, outputs))


def _flag(params: Any, key: str) -> bool:
    return bool(params.get(key, False)) if isinstance(params, dict) else False


def _requested_outputs(obj: Mapping[str, Any], outputs: Sequence[Binding]) -> dict[str, bool]:
    binary_all = _flag(obj.get("parameters"), "binary_data_output")
    names = [n for n, _, _ in outputs]
    asked = obj.get("outputs")
    if asked is None:
        return dict.fromkeys(names, binary_all)
    if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
        raise InputError("'outputs' must be a list of objects with a 'name'")
    selected: dict[str, bool] = {}
    for spec in asked:
        name = spec.get("name")
        if name not in names:
            raise InputError(f"unknown output {name!r}; the model's outputs are {names}")
        params = spec.get("parameters")
        binary = _flag(params, "binary_data") if "binary_data" in (params or {}) else binary_all
        selected[name] = binary
    return selected


def encode_infer_response(model: str, request: InferRequest, results: Mapping[str, np.ndarray],
                          version: str = "1") -> tuple[bytes, dict[str, str]]:
    """The response body and its headers.

    Args:
        model: Model name.
        request: The parsed request (id and output selection).
        results: Output name -> this request's array.
        version: Model version string.

    Returns:
        ``(body, headers)``: JSON, or JSON followed by binary buffers with the
        ``Inference-Header-Content-Length`` header.
    """
    tensors, buffers = [], []
    for name, binary in request.outputs.items():
        arr = np.ascontiguousarray(results[name])
        tensor: dict[str, Any] = {"name": name, "datatype": datatype_name(arr.dtype),
                                  "shape": list(arr.shape)}
        if binary:
            raw = arr.tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            # bfloat16 has no JSON number form of its own: send its float32 value.
            plain = arr.astype(np.float32) if arr.dtype == dtypes.bfloat16 else arr
            tensor["data"] = plain.reshape(-1).tolist()
        tensors.append(tensor)
    reply: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id:
        reply["id"] = request.id
    reply["outputs"] = tensors
    head = json.dumps(reply).encode()
    if not buffers:
        return head, {"content-type": "application/json"}
    return b"".join([head, *buffers]), {"content-type": "application/octet-stream",
                                        HEADER_LENGTH: str(len(head))}


def error_body(message: str) -> bytes:
    """KServe's error object: ``{"error": "..."}``."""
    return json.dumps({"error": message}).encode()

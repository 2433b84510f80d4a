"""The plan file format (DESIGN.md contract): how an Engine is stored on disk.

Layout (all integers little-endian)::

    offset 0   8 bytes   magic b"DISTRTPL"
           8   u32       format version (FORMAT_VERSION)
          12   u32       reserved (0)
          16   u64       header length H
          24   u64       payload length P
          32   32 bytes  SHA-256 of bytes [64, end of file)
          64   H bytes   JSON header (UTF-8)
               padding   zeros up to a multiple of 64
     payload   P bytes   raw weights, each at a 64-byte aligned offset (relative to payload)

The file size must be exactly ``align64(64 + H) + P``. Loading checks, in order: size,
magic, format version, lengths against the file size, checksum; only then is the JSON
parsed (``json.loads``: data only, it never runs code; no pickle anywhere), and every
dtype, shape, offset and size in it is bound-checked before a byte of payload is viewed.
Weights come back as read-only views of one memory map of the file.

Alternatives rejected: ``np.savez`` (zip, no alignment, pickle fallback for objects);
protobuf/ONNX (2 GB limit, and we also store layout, tactics and the memory plan);
safetensors (close to this, but one more dependency for 150 lines).

``network_hash`` (an engine's default ``plan_hash``, computed on every build) hashes each
weight as a two-level SHA-256 of fixed-size pieces, hashed on one thread per core. Rejected:
one flat SHA-256 over all bytes (one core: 5 s for the 1B Llama example), a faster
non-cryptographic hash (plan hashes are promised to be SHA-256), and remembering digests on
the ``Weights`` (an array edited in place, as refit does, would keep a stale digest).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import DistRtError, PlanFileError, VersionMismatchError
from dist_rt.network import Layer, Network, Tensor
from dist_rt.ops import get_op
from dist_rt.weights import Weights

MAGIC = b"DISTRTPL"
FORMAT_VERSION = 1
ALIGN = 64
_PREAMBLE = struct.Struct("<8sIIQQ32s")
PREAMBLE_SIZE = _PREAMBLE.size  # 64
#: Headers larger than this are refused before reading (a damaged length must not OOM us).
MAX_HEADER_BYTES = 1 << 30
#: Weights are hashed (network_hash) in pieces of this many bytes, each piece on any worker
#: thread. The digest depends on this size (never on the thread count): changing it changes
#: every network hash.
HASH_CHUNK_BYTES = 16 << 20
#: Threads hashing weights: hashlib releases the GIL on large buffers, so they use one core
#: each (SHA-256 runs at 0.4-2 GB/s a core; a 1B-parameter fp16 model has 2 GB of weights).
HASH_WORKERS = min(32, os.cpu_count() or 1)
#: Below this many weight bytes, starting threads costs more than it saves.
_PARALLEL_HASH_BYTES = 4 << 20


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# -- attribute values <-> JSON ---------------------------------------------------------------

def encode_value(value: Any, where: str) -> Any:
    """JSON-able form of an attribute/metadata value (arrays as {dtype, shape, base64}).

    Raises:
        PlanFileError: The value has a type the plan file cannot store (names ``where``).
    """
    if isinstance(value, Network):  # a subgraph (If/Loop/Scan body): nested JSON
        return {"__network__": _describe_nested(value, where)}
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":  # ONNX strings
        if not all(isinstance(v, str) for v in value.flat):
            raise PlanFileError(f"{where}: object arrays other than strings cannot be stored "
                                f"in a plan file")
        return {"__ndarray__": {"dtype": "string", "shape": list(value.shape),
                                "strings": list(value.flat)}}
    if isinstance(value, np.ndarray):
        try:
            name = dtypes.name_of(value.dtype)
        except DistRtError:
            raise PlanFileError(f"{where}: arrays of dtype {value.dtype} cannot be stored in a "
                                f"plan file") from None
        data = np.ascontiguousarray(value).tobytes()
        return {"__ndarray__": {"dtype": name, "shape": list(value.shape),
                                "base64": base64.b64encode(data).decode("ascii")}}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode_value(v, where) for v in value]
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {"__dict__": {str(k): encode_value(v, where) for k, v in value.items()}}
    raise PlanFileError(f"{where}: values of type {type(value).__name__} cannot be stored in "
                        f"a plan file")


def decode_value(obj: Any, where: str) -> Any:
    """Inverse of :func:`encode_value`, checking every array's dtype, shape and size.

    Raises:
        PlanFileError: A malformed array record (names ``where`` and what is wrong).
    """
    if isinstance(obj, list):
        return [decode_value(v, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__dict__" in obj:
        return {k: decode_value(v, where) for k, v in _expect(obj["__dict__"], dict,
                                                               where).items()}
    if "__bytes__" in obj:
        return _b64(obj["__bytes__"], where)
    if "__network__" in obj:
        return _nested_from_json(_expect(obj["__network__"], dict, where), where)
    rec = _expect(obj.get("__ndarray__"), dict, where)
    dtype = parse_dtype(rec.get("dtype"), where)
    shape = parse_shape(rec.get("shape"), where)
    if dtype.kind == "O":
        strings = _expect(rec.get("strings"), list, where)
        if len(strings) != int(np.prod(shape, dtype=np.int64)) or not all(
                isinstance(v, str) for v in strings):
            raise PlanFileError(f"{where}: a string array of shape {tuple(shape)} needs as "
                                f"many strings, got {len(strings)} values")
        out = np.empty(len(strings), dtype=object)
        out[:] = strings
        return out.reshape(shape)
    data = _b64(rec.get("base64"), where)
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != want:
        raise PlanFileError(f"{where}: array data has {len(data)} bytes, expected {want} for "
                            f"{dtypes.name_of(dtype)}{tuple(shape)}")
    return np.frombuffer(data, dtype).reshape(shape).copy()


def _b64(text: Any, where: str) -> bytes:
    try:
        return base64.b64decode(_expect(text, str, where), validate=True)
    except ValueError:
        raise PlanFileError(f"{where}: invalid base64 data") from None


def _expect(value: Any, kind: type | tuple, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise PlanFileError(f"{where}: expected {names}, got {type(value).__name__} "
                            f"{str(value)[:40]!r}")
    return value


def parse_dtype(name: Any, where: str) -> np.dtype:
    """The dtype called ``name`` in a plan file header.

    Raises:
        PlanFileError: Not a dtype name dist_rt knows.
    """
    try:
        return dtypes.from_name(_expect(name, str, where))
    except DistRtError:
        raise PlanFileError(f"{where}: unknown dtype {name!r}") from None


def parse_shape(shape: Any, where: str, symbolic: bool = False) -> tuple:
    """A shape from a header: non-negative ints (and str/None dims when ``symbolic``).

    Raises:
        PlanFileError: Not a list of valid dims.
    """
    dims = _expect(shape, list, where)
    ok = (int, str, type(None)) if symbolic else int
    for d in dims:
        if not isinstance(d, ok) or isinstance(d, bool) or (isinstance(d, int) and d < 0):
            raise PlanFileError(f"{where}: bad dim {d!r} in shape {dims!r}")
    return tuple(dims)


def _meta(meta: dict, where: str) -> dict:
    out = {}
    for key, value in meta.items():
        try:
            out[str(key)] = encode_value(value, where)
        except PlanFileError:
            continue  # free-form notes that are not data (objects) are not worth storing
    return out


# -- network <-> header ----------------------------------------------------------------------

def _describe_nested(sub: Network, where: str) -> dict[str, Any]:
    """A subgraph as JSON: its description, its constants inline, its outer-input names."""
    desc, constants = describe_network(sub)
    desc["constants"] = {t.name: encode_value(t.weights.numpy(), f"{where} constant "
                                              f"'{t.name}'") for t in constants}
    desc["outer_inputs"] = [str(n) for n in sub.metadata.get("outer_inputs", [])]
    return desc


def _nested_from_json(desc: dict[str, Any], where: str) -> Network:
    """Inverse of :func:`_describe_nested` (every array bound-checked by decode_value)."""
    weights = {str(k): Weights(decode_value(v, f"{where} constant '{k}'")) for k, v in
               _expect(desc.get("constants", {}), dict, f"{where} constants").items()}
    outer = _expect(desc.get("outer_inputs", []), list, f"{where} outer_inputs")
    sub = network_from_header(desc, weights)
    names = {t.name for t in sub.inputs}
    for name in outer:
        if not isinstance(name, str) or name not in names:
            raise PlanFileError(f"{where}: outer input {name!r} is not an input of the "
                                f"subgraph")
    sub.metadata["outer_inputs"] = list(outer)
    return sub


def describe_network(network: Network) -> tuple[dict[str, Any], list[Tensor]]:
    """The JSON description of a network and its constant tensors (in payload order).

    Returns:
        (description without weight offsets, constants sorted by name).
    """
    network.toposort()
    constants = sorted(network.constants, key=lambda t: t.name)
    inputs = {t.name for t in network.inputs}

    def tensor(t: Tensor) -> dict[str, Any]:
        kind = "input" if t.name in inputs else "constant" if t.is_constant else "activation"
        rec = {"name": t.name, "kind": kind,
               "dtype": None if t.dtype is None else dtypes.name_of(t.dtype),
               "shape": None if t.shape is None else list(t.shape)}
        if t.kind != "tensor":
            rec["value_kind"] = t.kind
        return rec

    layers = [{"name": lay.name, "op_type": lay.op_type, "domain": lay.domain,
               "opset": lay.opset, "nb_ranks": lay.nb_ranks,
               "inputs": [None if t is None else t.name for t in lay.inputs],
               "outputs": [t.name for t in lay.outputs],
               "attributes": {k: encode_value(v, f"layer '{lay.name}' attribute '{k}'")
                              for k, v in sorted(lay.attributes.items())},
               "metadata": _meta(lay.metadata, f"layer '{lay.name}' metadata")}
              for lay in network.layers]
    desc = {"name": network.name, "opsets": dict(network.opsets),
            "inputs": [t.name for t in network.inputs],
            "outputs": [t.name for t in network.outputs],
            "tensors": [tensor(t) for t in sorted(network.tensors.values(),
                                                  key=lambda t: t.name)],
            "layers": layers}
    return desc, constants


def network_hash(network: Network, *, workers: int | None = None) -> str:
    """SHA-256 over the canonical network description and every weight's bytes.

    The digest is ``SHA-256(json(description) || name_1 || 0x00 || D_1 || name_2 ...)`` over
    the constants in name order, where ``D_i`` is :func:`weight_digest` of constant ``i``. The
    description carries every tensor's dtype and shape and every layer, so the hash changes
    with any of them, with a constant's name, or with any byte of its data.

    Args:
        network: The network (layers are put in topological order).
        workers: Threads hashing the weights (default :data:`HASH_WORKERS`); the result does
            not depend on it.

    Returns:
        The hex digest.
    """
    desc, constants = describe_network(network)
    for layer in desc["layers"]:
        layer.pop("metadata")
    h = hashlib.sha256(json.dumps(desc, sort_keys=True).encode())
    digests = weight_digests([t.weights.numpy() for t in constants], workers=workers)
    for t, digest in zip(constants, digests, strict=True):
        h.update(t.name.encode() + b"\0")
        h.update(digest)
    return h.hexdigest()


def weight_digests(arrays: list[np.ndarray], *, workers: int | None = None) -> list[bytes]:
    """The :func:`weight_digest` of each array, the pieces hashed on ``workers`` threads.

    Every array is cut into :data:`HASH_CHUNK_BYTES` pieces and all pieces of all arrays
    share one thread pool, so one large embedding does not leave the other threads idle.

    Args:
        arrays: The weights (memory maps are read in place, never copied whole).
        workers: Threads (default :data:`HASH_WORKERS`); 1 hashes on the calling thread.

    Returns:
        One 32-byte digest per array, in order.
    """
    workers = HASH_WORKERS if workers is None else max(1, int(workers))
    owners: list[int] = []
    pieces: list[np.ndarray] = []
    for i, array in enumerate(arrays):
        data = _byte_view(array)
        for start in range(0, data.size, HASH_CHUNK_BYTES):
            owners.append(i)
            pieces.append(data[start:start + HASH_CHUNK_BYTES])
    total = sum(p.size for p in pieces)
    if workers > 1 and len(pieces) > 1 and total >= _PARALLEL_HASH_BYTES:
        with ThreadPoolExecutor(min(workers, len(pieces)), "dist_rt-hash") as pool:
            piece_digests = list(pool.map(_sha256, pieces))
    else:
        piece_digests = [_sha256(p) for p in pieces]
    outer = [hashlib.sha256() for _ in arrays]
    for i, digest in zip(owners, piece_digests, strict=True):
        outer[i].update(digest)
    return [h.digest() for h in outer]


def weight_digest(array: np.ndarray) -> bytes:
    """SHA-256 of the SHA-256 digests of the array's :data:`HASH_CHUNK_BYTES`-byte pieces.

    A two-level hash (a one-level Merkle tree) so the pieces can be hashed in parallel; it
    is a function of the bytes alone (row-major order), whatever the thread count. Strings
    (object arrays) are hashed as their JSON list, never as object pointers.
    """
    return weight_digests([array], workers=1)[0]


def _sha256(data: np.ndarray) -> bytes:
    # hashlib reads the buffer in place and releases the GIL for it (a thread per core).
    return hashlib.sha256(data).digest()


def _byte_view(array: np.ndarray) -> np.ndarray:
    """The array's bytes (row-major) as a flat uint8 array: a view unless not contiguous."""
    array = np.asarray(array)
    if array.dtype.kind == "O":  # ONNX strings: their text, not the addresses of the objects
        text = json.dumps(array.reshape(-1).tolist(), default=repr)
        return np.frombuffer(text.encode(), np.uint8)
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def network_from_header(header: dict[str, Any], weights: dict[str, Weights]) -> Network:
    """Rebuild the Network stored in a header.

    Raises:
        PlanFileError: Missing/ill-typed fields, unknown ops or dtypes, dangling names.
    """
    net = Network(str(header.get("name", "network")))
    net.opsets = {str(k): int(v) for k, v in _expect(header.get("opsets", {}), dict,
                                                     "opsets").items()}
    for i, rec in enumerate(_expect(header.get("tensors"), list, "tensors")):
        rec = _expect(rec, dict, f"tensors[{i}]")
        name = _expect(rec.get("name"), str, f"tensors[{i}].name")
        where = f"tensor '{name}'"
        dtype = None if rec.get("dtype") is None else parse_dtype(rec["dtype"], where)
        shape = None if rec.get("shape") is None else parse_shape(rec["shape"], where, True)
        if name in net.tensors:
            raise PlanFileError(f"{where} is listed twice")
        if rec.get("kind") == "constant" and name not in weights:
            raise PlanFileError(f"{where} is a constant but has no entry in the weights table")
        net.tensors[name] = Tensor(name, dtype, shape, weights.get(name))
        kind = rec.get("value_kind", "tensor")
        if kind not in ("tensor", "sequence", "optional"):
            raise PlanFileError(f"{where}: unknown value kind {kind!r}")
        net.tensors[name].kind = kind

    def get(name: Any, where: str) -> Tensor:
        if name not in net.tensors:
            raise PlanFileError(f"{where}: tensor {name!r} is not in the tensors table")
        return net.tensors[name]

    net.inputs = [get(n, "inputs") for n in _expect(header.get("inputs"), list, "inputs")]
    for i, rec in enumerate(_expect(header.get("layers"), list, "layers")):
        rec = _expect(rec, dict, f"layers[{i}]")
        name = _expect(rec.get("name"), str, f"layers[{i}].name")
        where = f"layer '{name}'"
        op_type = _expect(rec.get("op_type"), str, f"{where} op_type")
        domain = _expect(rec.get("domain", ""), str, f"{where} domain")
        opset = _expect(rec.get("opset"), int, f"{where} opset")
        try:
            get_op(op_type, domain, opset)
        except DistRtError as exc:
            raise PlanFileError(f"{where}: unknown op in plan file: {exc}") from None
        ins = [None if n is None else get(n, where)
               for n in _expect(rec.get("inputs"), list, f"{where} inputs")]
        outs = [get(n, where) for n in _expect(rec.get("outputs"), list, f"{where} outputs")]
        attrs = {k: decode_value(v, f"{where} attribute '{k}'")
                 for k, v in _expect(rec.get("attributes", {}), dict, where).items()}
        layer = Layer(name, op_type, ins, outs, attrs, domain=domain, opset=opset,
                      nb_ranks=_expect(rec.get("nb_ranks", 1), int, f"{where} nb_ranks"))
        layer.metadata = {k: decode_value(v, where) for k, v in
                          _expect(rec.get("metadata", {}), dict, where).items()}
        for t in outs:
            if t.producer is not None:
                raise PlanFileError(f"tensor '{t.name}' is produced by two layers")
            t.producer = layer
        net.layers.append(layer)
    net.outputs = [get(n, "outputs") for n in _expect(header.get("outputs"), list, "outputs")]
    try:
        net.validate()
    except DistRtError as exc:
        raise PlanFileError(f"the stored network is invalid: {exc}") from None
    return net


# -- file I/O ------------------------------------------------------------------------------

def write(path: str | os.PathLike, header: dict[str, Any], constants: list[Tensor]) -> None:
    """Write a plan file atomically (temp file + rename, so a mapped old file stays valid).

    Args:
        path: Destination.
        header: JSON-able header; a ``weights`` table is added here.
        constants: Constant tensors, written in order.

    Raises:
        PlanFileError: The file cannot be written (names the path and the OS error).
    """
    table, offset = [], 0
    for t in constants:
        if t.weights.dtype.kind == "O":
            raise PlanFileError(f"{path}: constant '{t.name}' holds strings; plan files store "
                                f"only fixed-size numeric weights")
        offset = _align(offset)
        table.append({"name": t.name, "dtype": dtypes.name_of(t.weights.dtype),
                      "shape": list(t.weights.shape), "offset": offset,
                      "nbytes": t.weights.nbytes})
        offset += t.weights.nbytes
    header = dict(header, weights=table)
    blob = json.dumps(header, separators=(",", ":")).encode()
    pad = _align(PREAMBLE_SIZE + len(blob)) - PREAMBLE_SIZE - len(blob)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp, done = None, False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".plan-", dir=directory)
        with os.fdopen(fd, "wb") as f:
            # The checksum covers what follows the preamble, so the preamble is written last:
            # the weights stream from their arrays (memory maps) once, never copied whole.
            f.write(b"\0" * PREAMBLE_SIZE)
            h = hashlib.sha256()
            for data in _payload(blob + b"\0" * pad, constants, table):
                h.update(data)
                f.write(data)
            f.seek(0)
            f.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(blob), offset, h.digest()))
        os.replace(tmp, path)
        done = True
    except OSError as exc:
        raise PlanFileError(f"cannot write plan file {path!r}: {exc}") from None
    finally:
        if tmp is not None and not done:  # a half-written file must not pile up
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _payload(head: bytes, constants: list[Tensor],
             table: list[dict[str, Any]]) -> Iterator[bytes | np.ndarray]:
    """The bytes after the preamble, in order: header + padding, then each weight after the
    zeros that align it (views of the weights, not copies)."""
    yield head
    pos = 0
    for t, rec in zip(constants, table, strict=True):
        if rec["offset"] > pos:
            yield b"\0" * (rec["offset"] - pos)
        data = _byte_view(t.weights.numpy())
        yield data
        pos = rec["offset"] + data.size


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Weights]]:
    """Read and check a plan file.

    Returns:
        (header dict, constant name -> Weights viewing the file's memory map).

    Raises:
        PlanFileError: Missing, truncated, damaged (checksum) or malformed file.
        VersionMismatchError: Written by another plan format version.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        mm = np.memmap(path, np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    except (OSError, ValueError) as exc:
        raise PlanFileError(f"cannot read plan file {path!r}: {exc}") from None
    where = f"plan file {path!r}"
    if size < PREAMBLE_SIZE:
        raise PlanFileError(f"{where} is truncated: {size} bytes, shorter than the "
                            f"{PREAMBLE_SIZE}-byte preamble")
    magic, version, _, hlen, plen, digest = _PREAMBLE.unpack(bytes(mm[:PREAMBLE_SIZE]))
    if magic != MAGIC:
        raise PlanFileError(f"{where} is not a dist_rt plan file: magic {magic!r}, expected "
                            f"{MAGIC!r}")
    if version != FORMAT_VERSION:
        raise VersionMismatchError(f"{where} has plan format version {version}, this dist_rt "
                                   f"reads version {FORMAT_VERSION}; rebuild the engine")
    if hlen == 0 or hlen > MAX_HEADER_BYTES or PREAMBLE_SIZE + hlen > size:
        raise PlanFileError(f"{where} is truncated or damaged: header length {hlen} does not "
                            f"fit in a file of {size} bytes")
    start = _align(PREAMBLE_SIZE + hlen)
    if start + plen != size:
        state = "truncated" if start + plen > size else "damaged (trailing bytes)"
        raise PlanFileError(f"{where} is {state}: header and payload need {start + plen} "
                            f"bytes, the file has {size}")
    if hashlib.sha256(memoryview(mm[PREAMBLE_SIZE:])).digest() != digest:
        raise PlanFileError(f"{where} is damaged: SHA-256 checksum mismatch (expected "
                            f"{digest.hex()[:16]}..., got "
                            f"{hashlib.sha256(memoryview(mm[PREAMBLE_SIZE:])).hexdigest()[:16]}"
                            f"...)")
    try:
        header = json.loads(bytes(mm[PREAMBLE_SIZE:PREAMBLE_SIZE + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PlanFileError(f"{where}: header is not valid JSON: {exc}") from None
    header = _expect(header, dict, f"{where} header")
    weights = {}
    for i, rec in enumerate(_expect(header.get("weights"), list, f"{where} weights")):
        rec = _expect(rec, dict, f"{where} weights[{i}]")
        name = _expect(rec.get("name"), str, f"{where} weights[{i}].name")
        w = f"{where}, weight '{name}'"
        dtype = parse_dtype(rec.get("dtype"), w)
        shape = parse_shape(rec.get("shape"), w)
        offset = _expect(rec.get("offset"), int, f"{w} offset")
        nbytes = _expect(rec.get("nbytes"), int, f"{w} nbytes")
        want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
        if nbytes != want or offset < 0 or offset % ALIGN or offset + nbytes > plen:
            raise PlanFileError(f"{w}: offset {offset} / {nbytes} bytes does not fit: expected "
                                f"{want} bytes at a {ALIGN}-aligned offset within the "
                                f"{plen}-byte payload")
        view = mm[start + offset:start + offset + nbytes].view(dtype).reshape(shape)
        weights[name] = Weights(view)
    return header, weights

"""ONNX initializers <-> :class:`~dist_rt.weights.Weights`, including external data.

Large models keep their weights in side files (``TensorProto.data_location = EXTERNAL`` with
``location``/``offset``/``length`` entries). The importer never reads those bytes: it
describes them as memory-mapped :class:`Weights`, so that a rank later reads only its shard
(``Weights.read(index)``). The exporter writes weights above a size threshold to one such
file, each at an aligned offset so that the map of one tensor starts on a page boundary.
"""

from __future__ import annotations

import os

import numpy as np
from onnx import TensorProto, numpy_helper

from dist_rt import dtypes
from dist_rt.errors import ModelError, ParseError
from dist_rt.weights import Weights

#: Offsets of externally stored tensors are multiples of this (one page on common systems).
ALIGNMENT = 4096


def initializer_weights(tensor: TensorProto, base_dir: str) -> Weights:
    """The :class:`Weights` of an initializer; external data is mapped, not read.

    Args:
        tensor: The initializer.
        base_dir: Directory that external-data ``location`` entries are relative to.

    Raises:
        ParseError: The external data entry is malformed, escapes ``base_dir`` or the file
            is missing or too short.
    """
    if tensor.data_location != TensorProto.EXTERNAL:
        try:
            return Weights(numpy_helper.to_array(tensor))
        except (ValueError, TypeError, KeyError) as exc:  # KeyError: unknown data_type
            raise ParseError(f"initializer '{tensor.name}' cannot be decoded: {exc}") from None
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location")
    if not location:
        raise ParseError(f"initializer '{tensor.name}' is stored externally but has no "
                         f"'location' entry")
    # The ONNX spec forbids locations outside the model directory; a crafted path must not
    # make us map arbitrary files.
    if os.path.isabs(location) or os.path.normpath(location).startswith(".."):
        raise ParseError(f"initializer '{tensor.name}': external data location {location!r} "
                         f"must be a relative path inside the model directory")
    try:
        offset = int(entries.get("offset", 0))
        length = int(entries["length"]) if "length" in entries else None
        dtype = dtypes.from_onnx(tensor.data_type)
    except (ValueError, ModelError) as exc:
        raise ParseError(f"initializer '{tensor.name}': bad external data entry: {exc}") from None
    if dtype == np.dtype(object):
        raise ParseError(f"initializer '{tensor.name}': string tensors cannot be stored "
                         f"externally")
    path = os.path.join(base_dir, location)
    try:
        return Weights.from_file(path, offset, dtype, tuple(int(d) for d in tensor.dims),
                                 length=length)
    except ModelError as exc:
        raise ParseError(f"initializer '{tensor.name}': {exc}") from None


def weights_to_tensor(name: str, weights: Weights) -> TensorProto:
    """An in-memory ``TensorProto`` holding ``weights`` (mapped data is read)."""
    return numpy_helper.from_array(np.ascontiguousarray(weights.numpy()), name)


class ExternalDataWriter:
    """Appends tensors to one external-data file at aligned offsets.

    Args:
        path: The data file; created (truncated) on first write.
        threshold: Tensors of at least this many bytes go to the file; smaller ones stay
            inline in the model.
    """

    def __init__(self, path: str, threshold: int = 1024):
        self.path = path
        self.threshold = threshold
        self._file = None
        self._offset = 0

    def tensor(self, name: str, weights: Weights) -> TensorProto:
        """The ``TensorProto`` of ``weights``: inline when small, else an external entry."""
        if weights.nbytes < self.threshold or weights.dtype == np.dtype(object):
            return weights_to_tensor(name, weights)
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        pad = (-self._offset) % ALIGNMENT
        self._file.write(b"\0" * pad)
        self._offset += pad
        offset = self._offset
        data = np.ascontiguousarray(weights.numpy())
        # Row blocks keep the copy of a mapped tensor small while it streams to disk.
        flat = data.reshape(-1) if data.ndim else data.reshape(1)
        step = max(1, (64 << 20) // max(data.itemsize, 1))
        for start in range(0, flat.size, step):
            self._file.write(flat[start:start + step].tobytes())
        self._offset += data.nbytes
        proto = TensorProto()
        proto.name = name
        proto.data_type = dtypes.to_onnx(weights.dtype)
        proto.dims.extend(weights.shape)
        proto.data_location = TensorProto.EXTERNAL
        for key, value in (("location", os.path.basename(self.path)), ("offset", offset),
                           ("length", data.nbytes)):
            entry = proto.external_data.add()
            entry.key, entry.value = key, str(value)
        return proto

    def close(self) -> None:
        """Flush and close the data file (a no-op when nothing was written)."""
        if self._file is not None:
            self._file.close()
            self._file = None

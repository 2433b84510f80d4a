"""Constant tensor data: in memory, or memory-mapped from an ONNX external-data file.

A sharded rank must be able to read only its slice of a large weight. ``Weights.read(index)``
touches only the pages of the memory map that the slice covers, so rank r of N reads about
1/N of a column-sharded matrix from disk and never holds the rest.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dist_rt.errors import ModelError


class Weights:
    """The data of a constant tensor.

    Either wraps an array (``Weights(array)``) or describes a region of a file
    (``Weights.from_file(path, offset, dtype, shape)``) that is memory-mapped on first use.
    """

    __slots__ = ("_array", "_path", "_offset", "dtype", "shape")

    def __init__(self, array: Any | None = None, *, path: str | None = None, offset: int = 0,
                 dtype: np.dtype | None = None, shape: tuple[int, ...] | None = None):
        if array is None and path is None:
            raise ModelError("Weights need an array or a file path")
        self._array = None if array is None else np.asarray(array)
        self._path = path
        self._offset = int(offset)
        if self._array is not None:
            self.dtype = self._array.dtype
            self.shape = tuple(int(d) for d in self._array.shape)
        else:
            self.dtype = np.dtype(dtype)
            self.shape = tuple(int(d) for d in shape)

    @classmethod
    def from_file(cls, path: str, offset: int, dtype: np.dtype, shape: tuple[int, ...],
                  length: int | None = None) -> Weights:
        """Describe ``shape``/``dtype`` data stored at ``offset`` in ``path``.

        Raises:
            ModelError: The file is missing or too short for the tensor.
        """
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if length is not None and length != nbytes:
            raise ModelError(f"external data in {path!r} at offset {offset}: length {length} "
                             f"bytes, expected {nbytes} for shape {tuple(shape)} {dtype}")
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise ModelError(f"external data file {path!r} cannot be read: {exc}") from None
        if offset + nbytes > size:
            raise ModelError(f"external data file {path!r} has {size} bytes, tensor needs "
                             f"{offset + nbytes} (offset {offset} + {nbytes})")
        return cls(path=path, offset=offset, dtype=dtype, shape=tuple(shape))

    @property
    def is_mapped(self) -> bool:
        """True when the data lives in a file and is read lazily."""
        return self._array is None

    @property
    def nbytes(self) -> int:
        """Size of the full tensor in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    def _map(self) -> np.ndarray:
        if self.size == 0:
            return np.zeros(self.shape, self.dtype)
        return np.memmap(self._path, dtype=self.dtype, mode="r", offset=self._offset,
                         shape=self.shape)

    def numpy(self) -> np.ndarray:
        """The whole tensor (a read-only memory map for external data)."""
        if self._array is not None:
            return self._array
        return self._map()

    def read(self, index: tuple[slice, ...] | slice | None = None) -> np.ndarray:
        """Copy out ``tensor[index]``; for mapped data only the needed pages are touched."""
        src = self.numpy()
        out = src if index is None else src[index]
        return np.array(out, copy=True)

    def __repr__(self) -> str:
        where = f"file={self._path!r}@{self._offset}" if self.is_mapped else "memory"
        return f"Weights(shape={self.shape}, dtype={self.dtype}, {where})"

"""Saving generated models, optionally with their weights in one external-data file.

``onnx.save_model(save_as_external_data=True)`` would do, but it packs tensors back to back.
We write the data file ourselves so every tensor starts on a 64-byte boundary: a rank that
memory-maps the file can then view its slice of a weight without copying, and SIMD/DMA
alignment holds for the views. The layout is still plain ONNX external data (``location``,
``offset``, ``length``), so onnxruntime and ``onnx.load`` read it unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import TensorProto

#: Byte alignment of every tensor inside the external data file.
ALIGNMENT = 64

#: Tensors smaller than this stay inside the .onnx (shape constants, scalars), as onnx does.
SIZE_THRESHOLD = 1024


def _set_external(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")


def externalize(model: onnx.ModelProto, directory: str | os.PathLike, location: str,
                size_threshold: int = SIZE_THRESHOLD) -> Path:
    """Moves the large initializers of ``model`` (in place) into ``directory/location``.

    Args:
        model: Model whose initializers hold their data inline (``raw_data`` or typed fields).
        directory: Directory of the data file; the model must be saved there too, because
            ``location`` is stored relative.
        location: File name of the data file.
        size_threshold: Tensors with fewer bytes stay inline.

    Returns:
        The path of the data file written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / location
    offset = 0
    with open(path, "wb") as f:
        for tensor in model.graph.initializer:
            if tensor.data_location == TensorProto.EXTERNAL:
                continue
            data = onnx.numpy_helper.to_array(tensor).tobytes()
            if len(data) < size_threshold:
                continue
            pad = -offset % ALIGNMENT
            f.write(b"\0" * pad)
            offset += pad
            f.write(data)
            # to_array + tobytes gives the little-endian raw layout ONNX external data uses.
            _set_external(tensor, location, offset, len(data))
            offset += len(data)
    return path


def write(model: onnx.ModelProto, path: str | os.PathLike, external_data: bool = False) -> Path:
    """Saves ``model`` to ``path``.

    Args:
        model: The model; it is not modified (a copy is externalized).
        path: Destination ``.onnx`` file; parent directories are created.
        external_data: Put every initializer of at least 1 KiB into ``<path>.data`` next to
            the model, each 64-byte aligned, so sharded ranks can memory-map their slices.
            Ignored for a model whose weights are already external.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    already_external = any(
        t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer
    )
    # A model that already references external data (make_llama(external_data_dir=...)) is
    # saved as is: its relative location only resolves if ``path`` is in that directory.
    if external_data and not already_external:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        externalize(model, path.parent, path.name + ".data")
    onnx.save_model(model, str(path))
    return path

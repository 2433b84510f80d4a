"""Helpers shared by the normalization ops: compute dtype, reduced statistics, the
per-channel affine and the base class of the (N, C, *D) normalizations."""

from __future__ import annotations

from typing import Any

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import SameShapeOp
from dist_rt.ops._window import spatial_shape


def compute_dtype(dtype: Any) -> np.dtype:
    """Statistics run in float32 for 16-bit floats (ONNX ``stash_type=1``), else as given."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def moments(xp: Any, x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
    """Mean and population variance over ``axes`` (kept as size-1 dims)."""
    mean = x.mean(axis=axes, keepdims=True)
    diff = x - mean
    return mean, (diff * diff).mean(axis=axes, keepdims=True)


def check_param(layer: Any, index: int, got: Any, expected: tuple, what: str) -> None:
    """Raise ShapeError when a per-channel parameter does not have ``expected`` elements."""
    if got is None:
        return
    size = int(np.prod(got.shape)) if hasattr(got, "shape") else None
    want = int(np.prod(expected))
    if size != want:
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): {what} (input {index}) has "
                         f"shape {tuple(got.shape)}, expected {want} elements {expected}")


def channel_affine(y: Any, scale: Any, bias: Any) -> Any:
    """``y * scale[c] + bias[c]`` with the per-channel parameters applied along axis 1."""
    shape = (1, y.shape[1]) + (1,) * (y.ndim - 2)
    return y * scale.reshape(shape) + bias.reshape(shape)


class ChannelNorm(SameShapeOp):
    """Base of the normalizations of an (N, C, *D) input: InstanceNorm, GroupNorm, LRN.

    Subclasses set ``arity`` and give the math in ``normalize``; the base checks X's rank.
    """

    @classmethod
    def normalize(cls, layer: Any, xp: Any, x: Any, *params: Any) -> Any:
        """Y from X (N, C, *D) and the parameter inputs; subclasses override."""
        raise NotImplementedError

    @classmethod
    def infer(cls, layer, inputs):
        descs = super().infer(layer, inputs)
        spatial_shape(layer, inputs[0].shape)
        return descs

    @classmethod
    def _run(cls, layer, inputs, rt):
        spatial_shape(layer, inputs[0].shape)
        return [cls.normalize(layer, rt.xp, *inputs[:cls.arity[1]])]

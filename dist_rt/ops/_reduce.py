"""Base classes of the reductions: Reduce* (axes, keepdims, noop_with_empty_axes) and
ArgMax/ArgMin (axis, keepdims, select_last_index).

``axes`` is an attribute up to opset 17 (ReduceSum: 12) and an optional input from opset 18
(ReduceSum: 13); both forms are accepted by looking at the layer's opset. Reducing over an
empty axis gives the reduction's identity (0 for sums, -inf for max and log-sum...), as
onnx's reference does, instead of NumPy's "zero-size array" error.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import quiet, widen
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis


def _int_axes(layer: Any, values: Any, rank: int | None) -> tuple[int, ...]:
    axes = [int(a) for a in np.asarray(values).reshape(-1)]
    if rank is None:
        return tuple(axes)
    out = tuple(sorted({normalize_axis(layer, a, rank, "axes entry") for a in axes}))
    if len(out) != len(axes):
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): axes {axes} repeat an axis")
    return out


class Reduce(Op):
    """``Y = reduce(X, axes)``; subclasses give ``reduce`` and the empty-set ``identity``."""

    #: First opset where ``axes`` is an input rather than an attribute.
    axes_input_since: ClassVar[int] = 18
    #: Value of a reduction over an empty set ("max" / "min": the dtype's lowest / highest).
    identity: ClassVar[float | str] = 0.0
    #: The array module's reduction (``"sum"``: ``xp.sum``) that the default ``reduce`` calls.
    xp_name: ClassVar[str] = ""

    @classmethod
    def reduce(cls, xp: Any, x: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
        """The reduction over ``axes`` (non-empty, normalized): ``xp.<xp_name>`` by default;
        subclasses set ``xp_name`` or override."""
        if not cls.xp_name:
            raise NotImplementedError
        return getattr(xp, cls.xp_name)(x, axis=axes, keepdims=keepdims)

    @classmethod
    def _axes_source(cls, layer: Any, inputs: list) -> tuple[bool, Any]:
        """(known, raw axes or None). ``known`` is False when the axes input has no value."""
        if layer.opset < cls.axes_input_since:
            return True, layer.attr("axes", None)
        axes = inputs[1] if len(inputs) > 1 else None
        if axes is None:
            return True, None
        if isinstance(axes, TensorDesc):
            if axes.value is None:
                return False, None
            return True, axes.value
        return True, axes

    @classmethod
    def _resolve(cls, layer: Any, raw: Any, rank: int | None) -> tuple[int, ...] | None:
        """Normalized axes; None means "do not reduce" (noop_with_empty_axes)."""
        axes = () if raw is None else _int_axes(layer, raw, rank)
        if not axes:
            if layer.attr("noop_with_empty_axes", 0):
                return None
            return tuple(range(rank)) if rank is not None else ()
        return axes

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 2)
        x = inputs[0]
        keepdims = bool(layer.attr("keepdims", 1))
        known, raw = cls._axes_source(layer, list(inputs))
        if not known or x.shape is None:
            rank = x.rank if keepdims and x.shape is not None else None
            return [TensorDesc(x.dtype, None if rank is None else (None,) * rank)]
        axes = cls._resolve(layer, raw, len(x.shape))
        if axes is None:
            return [TensorDesc(x.dtype, x.shape)]
        if keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return [TensorDesc(x.dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        _, raw = cls._axes_source(layer, list(inputs))
        if raw is not None and not isinstance(raw, np.ndarray | list | tuple | int):
            raw = rt.xp.asnumpy(raw) if hasattr(rt.xp, "asnumpy") else np.asarray(raw)
        axes = cls._resolve(layer, raw, x.ndim)
        keepdims = bool(layer.attr("keepdims", 1))
        if axes is None:
            return [cls.noop(xp, x)]
        if any(x.shape[a] == 0 for a in axes):
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims \
                else tuple(d for i, d in enumerate(x.shape) if i not in axes)
            return [xp.full(shape, cls._identity(x.dtype), dtype=x.dtype)]
        with quiet(xp):
            y = cls.reduce(xp, widen(x), axes, keepdims)
        return [xp.asarray(y).astype(x.dtype, copy=False)]

    @classmethod
    def noop(cls, xp: Any, x: Any) -> Any:
        """Output when ``noop_with_empty_axes`` leaves X unreduced (a copy of X)."""
        return x.copy()

    @classmethod
    def _identity(cls, dtype: np.dtype) -> Any:
        if cls.identity in ("max", "min"):
            if dtype.kind == "b":
                return cls.identity == "min"
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                return info.min if cls.identity == "max" else info.max
            return -np.inf if cls.identity == "max" else np.inf
        return cls.identity


class ArgReduce(Op):
    """Index of the max/min along ``axis`` (int64); ties go to the first index, or the last
    with ``select_last_index``."""

    @staticmethod
    def arg(xp: Any, x: Any, axis: int) -> Any:
        """``argmax`` or ``argmin`` along ``axis``; subclasses override."""
        raise NotImplementedError

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        out = np.dtype(np.int64)
        if x.shape is None:
            return [TensorDesc(out, None)]
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), len(x.shape))
        if layer.attr("keepdims", 1):
            shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i != axis)
        return [TensorDesc(out, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = widen(inputs[0])
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), x.ndim)
        if x.shape[axis] == 0:
            raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): axis {axis} of input "
                             f"shape {tuple(x.shape)} is empty, expected at least 1 element")
        if layer.attr("select_last_index", 0):
            # The first hit in the reversed array is the last one in the original.
            idx = x.shape[axis] - 1 - cls.arg(xp, xp.flip(x, axis), axis)
        else:
            idx = cls.arg(xp, x, axis)
        idx = idx.astype(np.int64)
        if layer.attr("keepdims", 1):
            idx = xp.expand_dims(idx, axis)
        return [idx]

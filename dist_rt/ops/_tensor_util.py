"""Helpers shared by the shape/tensor-movement ops (Reshape, Gather, Slice, Concat...).

Symbolic shape values
---------------------
Exporters compute shapes at run time: ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``.
When the source tensor has symbolic dims (``('batch', 'seq', 768)``) the output of ``Shape``
has no NumPy value, yet every element of it is a known *dim* (``'batch'``, ``'seq'``, 768).
Putting strings in ``TensorDesc.value`` would leak into constant folding (other ops would
try to add them), so instead the producing layer records the dims of its small int outputs
in ``layer.metadata["symbolic_value"]`` (one list per output, None where unknown). Consumers
read it through :func:`sym_value`. Only the shape ops of this package write it; every other
op simply does not propagate it, which degrades to "unknown dim" (None), never to a wrong
answer. The record is rewritten on every inference, so it never goes stale after
``Network.infer_shapes`` re-runs in topological order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Dim, Op, Shape, TensorDesc, check_inputs

_SYM_KEY = "symbolic_value"
#: Symbolic values longer than this are not tracked (they are never shapes).
_MAX_SYM = 64


def here(layer: Any) -> str:
    """The ``"layer 'name' (Op): "`` prefix of an error message."""
    return f"layer '{layer.name}' ({layer.op_type}): "


def to_numpy(a: Any) -> np.ndarray:
    """A host NumPy copy of a NumPy or CuPy array (CuPy arrays have ``.get()``)."""
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return np.asarray(get() if callable(get) else a)


def host_ints(a: Any) -> list[int]:
    """The elements of a small int array (shape, axes, starts...) as Python ints."""
    return [int(v) for v in to_numpy(a).reshape(-1).tolist()]


def numel(shape: Shape) -> int | None:
    """Number of elements of a shape, or None when a dim is not a known int."""
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))


def fmt(shape: Shape) -> str:
    """``(2, 'seq', ?)`` text of a shape for error messages."""
    if shape is None:
        return "(?)"
    dims = ["?" if d is None else repr(d) if isinstance(d, str) else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def sym_value(layer: Any, index: int, inputs: Sequence[TensorDesc | None]) -> list[Dim] | None:
    """The elements of a small int input as dims (int, symbolic str or None), if tracked.

    A known value (constant, folded) wins; otherwise the producer's symbolic record is used.

    Args:
        layer: The consuming layer.
        index: Input index.
        inputs: The layer's input descriptions.

    Returns:
        A flat list of dims, or None when nothing is known about the input's elements.
    """
    desc = inputs[index] if index < len(inputs) else None
    if desc is None:
        return None
    if desc.value is not None:
        value = np.asarray(desc.value)
        if value.dtype.kind in "iu" and value.size <= _MAX_SYM:
            return [int(v) for v in value.reshape(-1).tolist()]
        return None
    tensor = layer.inputs[index] if index < len(layer.inputs) else None
    producer = getattr(tensor, "producer", None)
    if producer is None:
        return None
    record = producer.metadata.get(_SYM_KEY)
    if not record:
        return None
    for out, dims in zip(producer.outputs, record, strict=False):
        if out is tensor and dims is not None:
            return list(dims)
    return None


def known_ints(layer: Any, index: int, inputs: Sequence[TensorDesc | None]) -> list[int] | None:
    """The elements of an int input when every one is a known int, else None."""
    dims = sym_value(layer, index, inputs)
    if dims is None or not all(isinstance(d, int) for d in dims):
        return None
    return dims


def set_sym(layer: Any, values: Sequence[Sequence[Dim] | None]) -> None:
    """Record (or clear) the symbolic elements of the layer's outputs (one entry per output)."""
    if any(v is not None and len(v) <= _MAX_SYM for v in values):
        layer.metadata[_SYM_KEY] = [None if v is None or len(v) > _MAX_SYM else list(v)
                                    for v in values]
    else:
        layer.metadata.pop(_SYM_KEY, None)


def int_desc(layer: Any, dtype: Any, dims: Sequence[Dim] | None, shape: Shape) -> TensorDesc:
    """Describe an int output whose elements are ``dims``; records them as symbolic value.

    Returns a NumPy value too when every element is a known int, so folding goes on.
    """
    set_sym(layer, [dims])
    if dims is not None and all(isinstance(d, int) for d in dims) and shape is not None:
        value = np.asarray(dims, dtype=dtype).reshape(tuple(int(s) for s in shape))
        return TensorDesc(np.dtype(dtype), tuple(value.shape), value)
    return TensorDesc(np.dtype(dtype) if dtype is not None else None, shape)


def same_dim(a: Dim, b: Dim) -> bool:
    """True when two dims are known to be equal."""
    return a is not None and b is not None and a == b


def dims_product_ratio(numer: Sequence[Dim], denom: Sequence[Dim]) -> Dim:
    """``prod(numer) / prod(denom)`` over possibly symbolic dims, or None if not expressible.

    Symbolic factors cancel by name; the result is an int, a single leftover symbol (when
    the int parts are equal), or None.

    Raises:
        ValueError: Both sides are fully static and the division is not exact.
    """
    if any(d is None for d in numer) or any(d is None for d in denom):
        return None
    syms = Counter(d for d in numer if isinstance(d, str))
    num = int(np.prod([d for d in numer if isinstance(d, int)], dtype=np.int64))
    den = 1
    for d in denom:
        if isinstance(d, str):
            if syms[d] <= 0:
                return None
            syms[d] -= 1
        else:
            den *= int(d)
    left = [s for s, n in syms.items() for _ in range(n)]
    if not left:
        if den == 0 or num % den:
            raise ValueError(f"{num} is not divisible by {den}")
        return num // den
    if len(left) == 1 and num == den and den != 0:
        return left[0]
    return None


def axes_list(layer: Any, inputs: Sequence[TensorDesc | None], input_index: int,
              attr: str = "axes") -> tuple[bool, list[int] | None]:
    """Axes from an attribute (old opsets) or an input (newer opsets).

    Returns:
        ``(given, axes)``: ``given`` is False when neither is present; ``axes`` is None when
        given as an input whose value is unknown at build time.
    """
    value = layer.attr(attr)
    if value is not None:
        return True, [int(a) for a in np.asarray(value).reshape(-1).tolist()]
    if input_index < len(inputs) and inputs[input_index] is not None:
        return True, known_ints(layer, input_index, inputs)
    return False, None


def run_axes(layer: Any, inputs: Sequence[Any], input_index: int,
             attr: str = "axes") -> list[int] | None:
    """Run-time counterpart of :func:`axes_list`: the attribute, else the input, else None."""
    value = layer.attr(attr)
    if value is not None:
        return [int(a) for a in value]
    if input_index < len(inputs) and inputs[input_index] is not None:
        return host_ints(inputs[input_index])
    return None


def reshaped_input(layer: Any, inputs: Sequence[TensorDesc | None], shape: Shape) -> TensorDesc:
    """Input 0 viewed with ``shape`` (Squeeze, Unsqueeze): dtype, shape, the value when known.

    Also records input 0's symbolic value for this layer's output (see :func:`set_sym`).
    """
    x = inputs[0]
    set_sym(layer, [sym_value(layer, 0, inputs)])
    value = None if x.value is None or shape is None else x.value.reshape(shape)
    return TensorDesc(x.dtype, shape, value)


def normalize_axes(layer: Any, axes: Sequence[int], rank: int, what: str = "axes") -> list[int]:
    """Map axes into ``[0, rank)`` and reject out-of-range or repeated ones.

    Raises:
        ShapeError: An axis is out of range or repeated.
    """
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"{here(layer)}{what} {list(axes)} has {a}, out of range for "
                             f"rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ShapeError(f"{here(layer)}{what} {list(axes)} repeats an axis")
    return out


class BlockRearrange(Op):
    """Base of DepthToSpace and SpaceToDepth: one 4-D NCHW input, attribute ``blocksize``.

    ``infer`` checks the input; subclasses give the output dims in ``out_dims``.
    """

    @classmethod
    def out_dims(cls, layer: Any, b: int, n: Dim, c: Dim, h: Dim, w: Dim) -> Shape:
        """Output dims for blocksize ``b`` and input dims ``(n, c, h, w)``."""
        raise NotImplementedError

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        b = int(layer.attr("blocksize"))
        if x.shape is None:
            return [TensorDesc(x.dtype, (None,) * 4)]
        if len(x.shape) != 4:
            raise ShapeError(f"{here(layer)}input {fmt(x.shape)} must be 4-D NCHW")
        return [TensorDesc(x.dtype, cls.out_dims(layer, b, *x.shape))]

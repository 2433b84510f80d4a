"""Array layout helpers shared by the MPI and NCCL communicators.

Both backends run every collective on a buffer whose collective axis is axis 0, because
MPI and NCCL address chunks as contiguous runs of elements::

    x: shape (a, d, b), axis=1  ->  front(x): shape (d, a, b), contiguous
    chunk j of front(x) = rows [j*d/n, (j+1)*d/n)   (one contiguous run)

When ``axis != 0`` this costs one contiguous copy in and one out (two passes over the
tensor); ``axis == 0`` on a contiguous array costs nothing. The alternative, derived MPI
datatypes / strided NCCL calls, was rejected: NCCL has no strided collectives, and MPI
derived types run slower than a copy for the large tensors that matter here.

The functions take the array module (``numpy`` or ``cupy``) as ``xp`` so that this module
never imports CuPy.
"""

from __future__ import annotations

from typing import Any


def to_front(xp: Any, x: Any, axis: int) -> Any:
    """Return a C-contiguous array with ``axis`` moved to position 0.

    Args:
        xp: ``numpy`` or ``cupy``.
        x: The input array.
        axis: A non-negative axis of ``x`` (0 for a 0-d array).

    Returns:
        ``x`` itself when it is already contiguous with ``axis == 0``, else a contiguous copy.
    """
    if x.ndim == 0:
        return xp.ascontiguousarray(x.reshape(1))
    if axis:
        x = xp.moveaxis(x, axis, 0)
    return xp.ascontiguousarray(x)


def from_front(xp: Any, y: Any, axis: int, ndim: int) -> Any:
    """Undo :func:`to_front`: move axis 0 of ``y`` back to ``axis`` (contiguous result).

    Args:
        xp: ``numpy`` or ``cupy``.
        y: An array in front layout.
        axis: The axis it came from.
        ndim: Rank of the original array (0 gives a 0-d result).

    Returns:
        The array in the caller's layout.
    """
    if ndim == 0:
        return y.reshape(())
    if axis:
        y = xp.ascontiguousarray(xp.moveaxis(y, 0, axis))
    return y


def nbytes_per_row(x: Any) -> int:
    """Bytes in one index of axis 0 of a front-layout array (0-d counts as one row)."""
    return x.nbytes // max(x.shape[0], 1) if x.ndim else x.nbytes

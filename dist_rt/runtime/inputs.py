"""Input helpers of the CLI: ``--shapes`` parsing, default shapes, random or ``.npz`` feeds.

Default shapes: a symbolic (or unknown) first dim is the batch and defaults to 1, every other
symbolic dim defaults to 16 (a sequence length); a symbolic name set by ``--shapes`` for one
input applies to every input that shares it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import InputError
from dist_rt.network import Network, format_shape

DEFAULT_BATCH = 1
DEFAULT_SEQ = 16


def parse_shapes(text: str | None) -> dict[str, tuple[int, ...]]:
    """Parse ``"name:2x16,mask:2x16"`` into ``{"name": (2, 16), ...}``.

    Raises:
        InputError: Malformed entry (names it and shows the expected form).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, dims = item.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError(item)
            shape = tuple(int(d) for d in dims.split("x")) if dims else ()
            if any(d < 0 for d in shape):
                raise ValueError(item)
        except ValueError:
            raise InputError(f"--shapes: cannot parse {item!r}; expected NAME:DxDx... such as "
                             f"input_ids:2x16") from None
        shapes[name] = shape
    return shapes


def check_shape(name: str, shape: Sequence, got: tuple[int, ...],
                symbols: dict[str, tuple[int, str]], prefix: str = "") -> None:
    """Check a concrete input shape against its binding's (possibly symbolic) shape.

    Args:
        name: The input's name.
        shape: The binding's shape: int dims must match, str dims name a symbol.
        got: The concrete shape.
        symbols: Symbol -> (value, input that set it); filled in and checked across calls.
        prefix: Prepended to error messages (rank, context).

    Raises:
        InputError: Wrong rank, a static dim differs, or a symbol gets two values.
    """
    if len(got) != len(shape):
        raise InputError(f"{prefix}input '{name}': shape {got} has rank {len(got)}, expected "
                         f"rank {len(shape)} {format_shape(shape)}")
    for i, (want, have) in enumerate(zip(shape, got, strict=True)):
        if isinstance(want, int) and want != have:
            raise InputError(f"{prefix}input '{name}': shape {got}, expected "
                             f"{format_shape(shape)} (dim {i} must be {want})")
        if isinstance(want, str):
            seen = symbols.setdefault(want, (have, name))
            if seen[0] != have:
                raise InputError(f"{prefix}input '{name}': dim {i} ('{want}') is {have}, but "
                                 f"input '{seen[1]}' gives '{want}' = {seen[0]}")


def resolve_shapes(bindings: Sequence[tuple[str, np.dtype, tuple]],
                   given: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for every input: given ones checked, symbolic dims defaulted.

    Args:
        bindings: The engine's/network's inputs as ``(name, dtype, shape)``.
        given: Shapes from ``--shapes`` or from an ``--inputs`` file.

    Returns:
        Input name -> shape.

    Raises:
        InputError: A given name is not an input, or a given shape contradicts the model
            (see :func:`check_shape`).
    """
    names = [n for n, _, _ in bindings]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InputError(f"unknown input(s) {unknown}; the model's inputs are {names}")
    symbols: dict[str, tuple[int, str]] = {}
    for name, _, shape in bindings:
        if name in given:
            check_shape(name, shape, tuple(int(d) for d in given[name]), symbols)
    out = {}
    for name, _, shape in bindings:
        if name in given:
            out[name] = tuple(int(d) for d in given[name])
            continue
        dims = []
        for i, d in enumerate(shape):
            if isinstance(d, int):
                dims.append(d)
            elif isinstance(d, str) and d in symbols:
                dims.append(symbols[d][0])
            else:
                dims.append(DEFAULT_BATCH if i == 0 else DEFAULT_SEQ)
                if isinstance(d, str):
                    symbols[d] = (dims[-1], name)
        out[name] = tuple(dims)
    return out


def index_bounds(network: Network) -> dict[str, int]:
    """Upper bounds for integer inputs used as indices (Gather's data dim), by input name."""
    bounds: dict[str, int] = {}
    for layer in network.layers:
        if layer.op_type != "Gather" or len(layer.inputs) < 2 or layer.inputs[1] is None:
            continue
        data, idx = layer.inputs[0], layer.inputs[1]
        if data is None or data.shape is None:
            continue
        axis = int(layer.attr("axis", 0)) % max(len(data.shape), 1)
        dim = data.shape[axis] if data.shape else None
        if isinstance(dim, int) and dim > 0:
            bounds[idx.name] = min(bounds.get(idx.name, dim), dim)
    return bounds


def random_inputs(bindings: Sequence[tuple[str, np.dtype, tuple]],
                  shapes: Mapping[str, tuple[int, ...]], seed: int = 0,
                  bounds: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded random feeds: floats ~ N(0, 1), ints in ``[0, bound)`` (bound 100 by default).

    Returns:
        Input name -> array of the binding's dtype and ``shapes[name]``.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, dtype, _ in bindings:
        shape = shapes[name]
        if dtypes.is_float(dtype):
            feeds[name] = rng.standard_normal(shape).astype(np.float32).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.random(shape) < 0.5
        else:
            high = int((bounds or {}).get(name, 100))
            feeds[name] = rng.integers(0, high, size=shape).astype(dtype)
    return feeds


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Named arrays of an ``.npz`` file (``allow_pickle=False``: data only).

    Raises:
        InputError: Missing or unreadable file.
    """
    if not os.path.isfile(path):
        raise InputError(f"--inputs: file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"--inputs: {path!r} is not a readable .npz file: {exc}") from None


def max_errors(got: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, float]:
    """Max absolute difference per output (as float64)."""
    return {n: float(np.max(np.abs(np.asarray(got[n], np.float64)
                                   - np.asarray(ref[n], np.float64)), initial=0.0))
            for n in ref}

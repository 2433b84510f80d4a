"""Sliding-window helpers shared by Conv, ConvTranspose and the pooling ops.

Every windowed op here is written as "pad, then take one strided view per kernel offset":
for a kernel of ``K = prod(kernel_shape)`` taps the input is sliced ``K`` times, each slice
already strided by ``strides`` and shifted by ``offset * dilation``, and the ``K`` slices are
stacked into an im2col tensor of shape ``(N, C, K, *out_spatial)``. Conv then contracts it
with the weights in one ``xp.matmul``; pools reduce it over the ``K`` axis.

Rejected alternatives: ``as_strided`` windows (fast on NumPy but CuPy's copies differ and a
wrong stride silently reads garbage) and per-output-pixel loops (far too slow). The slice
loop runs ``K`` Python iterations (9 for a 3x3 kernel), each a vectorized copy, and works the
same on NumPy and CuPy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from dist_rt.errors import ShapeError, UnsupportedOpError
from dist_rt.ops._op import Op, TensorDesc, check_inputs


def _fail(layer: Any, message: str) -> ShapeError:
    return ShapeError(f"layer '{layer.name}' ({layer.op_type}): {message}")


def window_params(layer: Any, spatial: Sequence[int], kernel: Sequence[int],
                  ceil_mode: bool = False) -> tuple[list[int], list[int], list[int], list[int]]:
    """Resolve strides, dilations, pads and output sizes of a windowed op.

    Args:
        layer: The layer (attributes ``strides``, ``dilations``, ``pads``, ``auto_pad``).
        spatial: Input spatial sizes.
        kernel: Kernel spatial sizes.
        ceil_mode: Round the output size up (pooling's ``ceil_mode``).

    Returns:
        ``(strides, dilations, pads, out)`` where ``pads`` is ONNX-ordered
        ``[begin_0, ..., begin_n, end_0, ..., end_n]``; in ceil mode the end pads are not
        enlarged (callers pad the extra tail themselves, see :func:`extra_tail`).

    Raises:
        ShapeError: Attribute lengths do not match the spatial rank, or the window does not
            fit the (padded) input.
        UnsupportedOpError: Unknown ``auto_pad`` value.
    """
    nd = len(spatial)
    strides = list(layer.attr("strides", None) or [1] * nd)
    dilations = list(layer.attr("dilations", None) or [1] * nd)
    pads = list(layer.attr("pads", None) or [0] * (2 * nd))
    if len(strides) != nd or len(dilations) != nd or len(pads) != 2 * nd:
        raise _fail(layer, f"strides {strides}, dilations {dilations}, pads {pads} do not fit "
                           f"{nd} spatial dims (expected {nd}, {nd} and {2 * nd} values)")
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations):
        raise _fail(layer, f"strides {strides} and dilations {dilations} must be >= 1")
    auto_pad = layer.attr("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(nd):
            out = -(-spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + eff[i] - spatial[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + nd] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    elif auto_pad != "NOTSET":
        raise UnsupportedOpError(f"layer '{layer.name}' ({layer.op_type}): auto_pad "
                                 f"{auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, "
                                 f"VALID")
    out = []
    for i in range(nd):
        span = spatial[i] + pads[i] + pads[i + nd] - eff[i]
        if span < 0:
            raise _fail(layer, f"kernel extent {eff[i]} on spatial dim {i} exceeds the padded "
                               f"input size {spatial[i] + pads[i] + pads[i + nd]}")
        size = (math.ceil(span / strides[i]) if ceil_mode else span // strides[i]) + 1
        # ceil mode: a window must start inside the input or its begin padding.
        if ceil_mode and (size - 1) * strides[i] >= spatial[i] + pads[i]:
            size -= 1
        out.append(size)
    return strides, dilations, pads, out


def extra_tail(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int], pads: Sequence[int], out: Sequence[int]) -> list[int]:
    """Padding needed past ``pads`` end so the last (ceil-mode) window is in bounds."""
    nd = len(spatial)
    return [max(0, (out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                - (spatial[i] + pads[i] + pads[i + nd])) for i in range(nd)]


def pad_spatial(xp: Any, x: Any, begin: Sequence[int], end: Sequence[int],
                value: float = 0) -> Any:
    """Pad the trailing ``len(begin)`` dims of ``x`` with a constant."""
    if not any(begin) and not any(end):
        return x
    width = [(0, 0)] * (x.ndim - len(begin)) + list(zip(begin, end, strict=True))
    return xp.pad(x, width, mode="constant", constant_values=value)


def windows(xp: Any, x: Any, kernel: Sequence[int], strides: Sequence[int],
            dilations: Sequence[int], out: Sequence[int]) -> Any:
    """Stack every kernel tap of an already padded ``x`` (N, C, *spatial).

    Returns:
        Array of shape ``(N, C, K, *out)`` with ``K = prod(kernel)``, taps in row-major
        kernel order (matching a flattened weight tensor).
    """
    taps = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        index = tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                      for o, d, s, n in zip(offset, dilations, strides, out, strict=True))
        taps.append(x[(Ellipsis, *index)])
    return xp.stack(taps, axis=2)


def spatial_shape(layer: Any, shape: Any, what: str = "input 0") -> tuple[int, ...] | None:
    """Check a (N, C, *spatial) shape has rank >= 3; returns it or None when unknown."""
    if shape is None:
        return None
    if len(shape) < 3:
        raise _fail(layer, f"{what} has shape {tuple(shape)}, expected (N, C, D1, ...) with at "
                           f"least one spatial dim")
    return tuple(shape)



class ConvLike(Op):
    """Shape inference of Conv and ConvTranspose: X (N, C, *D), W (rank >= 3), optional B.

    Subclasses give ``out_channels`` (checking W against X) and ``out_spatial``; the output
    is ``(N, out_channels, *out_spatial)``, with None dims where a size is not static.
    """

    @classmethod
    def out_channels(cls, layer: Any, x_shape: tuple, w_shape: tuple | None,
                     group: int) -> Any:
        """Output channels (None when unknown); raises ShapeError when W does not fit X."""
        raise NotImplementedError

    @classmethod
    def out_spatial(cls, layer: Any, spatial: Sequence[int], kernel: Sequence[int]) -> list[int]:
        """Output spatial sizes for static ``spatial`` and ``kernel``."""
        raise NotImplementedError

    @staticmethod
    def operands(layer: Any, inputs: Sequence[Any]) -> tuple[Any, Any, Any, int]:
        """``(X, W, B or None, group)`` of a run."""
        bias = inputs[2] if len(inputs) > 2 else None
        return inputs[0], inputs[1], bias, int(layer.attr("group", 1))

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 3)
        x = inputs[0]
        xs = spatial_shape(layer, x.shape)
        ws = spatial_shape(layer, inputs[1].shape, "weight (input 1)")
        if xs is None:
            return [TensorDesc(x.dtype, None)]
        m = cls.out_channels(layer, xs, ws, int(layer.attr("group", 1)))
        kernel = layer.attr("kernel_shape", None) or (list(ws[2:]) if ws else None)
        spatial = xs[2:]
        if kernel is None or not all(isinstance(d, int) for d in (*spatial, *kernel)):
            return [TensorDesc(x.dtype, (xs[0], m) + (None,) * len(spatial))]
        return [TensorDesc(x.dtype, (xs[0], m, *cls.out_spatial(layer, spatial, kernel)))]

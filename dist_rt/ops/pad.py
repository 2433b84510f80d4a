"""Pad: constant/reflect/edge/wrap padding; negative pads crop.

Opset < 11 takes ``pads``/``value`` attributes; 11+ inputs ``data, pads, constant_value?``;
18+ adds ``axes?`` so ``pads`` covers only those axes (``[begin..., end...]``).
"""

from __future__ import annotations

from dist_rt.errors import ShapeError, UnsupportedOpError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import fmt, here, host_ints, known_ints, normalize_axes, to_numpy

_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def full_pads(layer, rank: int, pads: list[int], axes: list[int] | None) -> list[tuple[int, int]]:
    """``(before, after)`` per dim of the input.

    Raises:
        ShapeError: ``pads`` has the wrong length for the rank or axes.
    """
    axes = list(range(rank)) if axes is None else normalize_axes(layer, axes, rank)
    if len(pads) != 2 * len(axes):
        raise ShapeError(f"{here(layer)}pads {pads} has {len(pads)} entries, expected "
                         f"{2 * len(axes)} for axes {axes}")
    out = [(0, 0)] * rank
    for i, a in enumerate(axes):
        out[a] = (pads[i], pads[i + len(axes)])
    return out


@register_op("Pad", since_opset=1)
class Pad(Op):
    """Attribute ``mode``: constant (default), reflect, edge, wrap."""

    shape_inputs = (1,)

    @classmethod
    def _pads(cls, layer, inputs, host: bool):
        pads = layer.attr("pads", layer.attr("paddings"))
        if pads is not None:
            return [int(p) for p in pads], None, True
        get = (lambda i: host_ints(inputs[i])) if host else (lambda i: known_ints(layer, i, inputs))
        axes = get(3) if len(inputs) > 3 and inputs[3] is not None else None
        axes_known = axes is not None or len(inputs) <= 3 or inputs[3] is None
        return get(1), axes, axes_known

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 4)
        x = inputs[0]
        pads, axes, axes_known = cls._pads(layer, inputs, host=False)
        if x.shape is None:
            return [TensorDesc(x.dtype, None)]
        if pads is None or not axes_known:
            return [TensorDesc(x.dtype, (None,) * len(x.shape))]
        out = []
        for d, (lo, hi) in zip(x.shape, full_pads(layer, len(x.shape), pads, axes), strict=True):
            if isinstance(d, int):
                if d + lo + hi < 0:
                    raise ShapeError(f"{here(layer)}pads {pads} crop input {fmt(x.shape)} below "
                                     f"zero")
                out.append(d + lo + hi)
            else:
                out.append(d if lo == hi == 0 else None)
        return [TensorDesc(x.dtype, tuple(out))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        mode = str(layer.attr("mode", "constant"))
        if mode not in _MODES:
            raise UnsupportedOpError(f"{here(layer)}mode {mode!r} is not one of "
                                     f"{', '.join(_MODES)}")
        pads, axes, _ = cls._pads(layer, inputs, host=True)
        widths = full_pads(layer, x.ndim, pads, axes)
        # Negative pads crop first; then only non-negative padding remains.
        crop = tuple(slice(-lo if lo < 0 else 0, d + hi if hi < 0 else d)
                     for d, (lo, hi) in zip(x.shape, widths, strict=True))
        x = x[crop]
        widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
        if mode == "constant":
            if layer.attr("value") is not None:
                value = layer.attr("value")
            elif len(inputs) > 2 and inputs[2] is not None:
                value = to_numpy(inputs[2]).reshape(-1)[0]
            else:
                value = 0
            return [xp.pad(x, widths, mode="constant", constant_values=value)]
        return [xp.pad(x, widths, mode=_MODES[mode])]

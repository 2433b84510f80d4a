"""Tile: repeat a tensor ``repeats[i]`` times along each dim ``i``."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import fmt, here, host_ints, sym_value


def _check(layer, shape, repeats) -> None:
    if len(repeats) != len(shape):
        raise ShapeError(f"{here(layer)}repeats {repeats} has {len(repeats)} entries, expected "
                         f"one per dim of input {fmt(shape)}")
    if any(isinstance(r, int) and r < 0 for r in repeats):
        raise ShapeError(f"{here(layer)}repeats {repeats} must not be negative")


@register_op("Tile", since_opset=6)
class Tile(Op):
    """Inputs ``input, repeats`` (1-D int64, one entry per dim)."""

    shape_inputs = (1,)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        x = inputs[0]
        reps = sym_value(layer, 1, inputs)
        if x.shape is None:
            return [TensorDesc(x.dtype, None)]
        if reps is None:
            return [TensorDesc(x.dtype, (None,) * len(x.shape))]
        _check(layer, x.shape, reps)
        out = []
        for d, r in zip(x.shape, reps, strict=True):
            if isinstance(d, int) and isinstance(r, int):
                out.append(d * r)
            elif r == 1:
                out.append(d)
            elif d == 1:
                out.append(r)
            else:
                out.append(None)
        return [TensorDesc(x.dtype, tuple(out))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        reps = host_ints(inputs[1])
        _check(layer, x.shape, reps)
        return [rt.xp.tile(x, reps)]

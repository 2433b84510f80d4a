"""Scan: a body run once per slice of the scan inputs, threading state through.

Opset 9+: inputs are N initial states then M scan inputs (``num_scan_inputs``), sliced
along ``scan_input_axes`` (default 0), reversed where ``scan_input_directions`` is 1. The
body maps (states, slices) -> (states, K scan output slices); the outputs are the final
states and the K slices stacked along ``scan_output_axes`` (reversed where
``scan_output_directions`` is 1). Opset 8 has a leading batch axis on every input and an
optional ``sequence_lens`` first input; it runs the opset-9 recurrence per batch entry.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, register_op
from dist_rt.ops._subgraph import (
    explicit_descs,
    formal_inputs,
    output_descs,
    run_subgraph,
    scalar,
    split_inputs,
)


def _scan(layer, states, xs, outer, rt, in_axes, in_dirs, out_axes, out_dirs, length=None):
    """The opset-9 recurrence; returns final states + stacked scan outputs."""
    xp = rt.xp
    body = layer.attributes["body"]
    formal = formal_inputs(body)
    axes = [a % x.ndim for a, x in zip(in_axes, xs, strict=True)]
    steps = {int(x.shape[a]) for x, a in zip(xs, axes, strict=True)}
    if len(steps) > 1:
        raise ShapeError(f"layer '{layer.name}' (Scan): scan inputs have different lengths "
                         f"{sorted(steps)} along their scan axes")
    steps_n = steps.pop() if steps else 0
    if length is not None:
        steps_n = min(steps_n, length)
    outs_acc: list[list] = [[] for _ in range(len(body.outputs) - len(states))]
    for t in range(steps_n):
        feeds = dict(outer)
        feeds.update((f.name, v) for f, v in zip(formal, states, strict=False))
        for f, x, a, d in zip(formal[len(states):], xs, axes, in_dirs, strict=True):
            feeds[f.name] = xp.take(x, steps_n - 1 - t if d else t, axis=a)
        outs = run_subgraph(body, feeds, rt)
        states = outs[:len(states)]
        for acc, value in zip(outs_acc, outs[len(states):], strict=True):
            acc.append(xp.asarray(value))
    stacked = []
    for k, acc in enumerate(outs_acc):
        seq = acc[::-1] if out_dirs[k] else acc
        rank = seq[0].ndim + 1 if seq else 1
        stacked.append(xp.stack(seq, axis=out_axes[k] % rank) if seq else xp.zeros((0,)))
    return list(states) + stacked


def _attrs(layer, n_scan: int, n_out: int) -> tuple[list, list, list, list]:
    return ([int(a) for a in layer.attr("scan_input_axes", [0] * n_scan)],
            [int(d) for d in layer.attr("scan_input_directions",
                                        layer.attr("directions", [0] * n_scan))],
            [int(a) for a in layer.attr("scan_output_axes", [0] * n_out)],
            [int(d) for d in layer.attr("scan_output_directions", [0] * n_out)])


def _infer(layer, own: list) -> list[TensorDesc]:
    """Final states keep their inputs' shapes; scan outputs' shapes are left to run time."""
    n_state = len(own) - int(layer.attr("num_scan_inputs"))
    body = output_descs(layer.attributes["body"])
    outs = [TensorDesc(d.dtype if d.dtype is not None else own[i].dtype, own[i].shape)
            for i, d in enumerate(body[:n_state])]
    return outs + [TensorDesc(d.dtype, None) for d in body[n_state:]]


@register_op("Scan", since_opset=9)
class Scan(Op):
    """``states, ys = fold(body, states, slices(xs))`` with per-input axes and directions."""

    @classmethod
    def infer(cls, layer, inputs):
        return _infer(layer, explicit_descs(layer, inputs))

    @classmethod
    def _run(cls, layer, inputs, rt):
        own, outer = split_inputs(layer, inputs)
        n_scan = int(layer.attr("num_scan_inputs"))
        n_state = len(own) - n_scan
        n_out = len(layer.attributes["body"].outputs) - n_state
        return _scan(layer, own[:n_state], own[n_state:], outer, rt,
                     *_attrs(layer, n_scan, n_out))


@register_op("Scan", since_opset=8)
class Scan8(Op):
    """Opset 8: a batch axis 0 on every input/output, optional ``sequence_lens`` first."""

    @classmethod
    def infer(cls, layer, inputs):
        return _infer(layer, explicit_descs(layer, inputs)[1:])  # skip sequence_lens

    @classmethod
    def _run(cls, layer, inputs, rt):
        own, outer = split_inputs(layer, inputs)
        xp = rt.xp
        lens, own = own[0], own[1:]
        n_scan = int(layer.attr("num_scan_inputs"))
        n_state = len(own) - n_scan
        n_out = len(layer.attributes["body"].outputs) - n_state
        in_axes, in_dirs, out_axes, out_dirs = _attrs(layer, n_scan, n_out)
        batch = int(own[0].shape[0])
        results = []
        for b in range(batch):
            length = None if lens is None else int(scalar(lens[b]))
            results.append(_scan(layer, [s[b] for s in own[:n_state]],
                                 [x[b] for x in own[n_state:]], outer, rt, in_axes, in_dirs,
                                 out_axes, out_dirs, length))
        return [xp.stack([r[k] for r in results]) for k in range(len(results[0]))]

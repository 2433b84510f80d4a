"""The recurrence shared by RNN, GRU and LSTM (ONNX layouts, directions, sequence_lens).

Each op supplies a ``cell(x_proj, h, c, weights, acts) -> (h, c)`` step; this module
handles layouts, the direction loop, per-batch ``sequence_lens`` (steps past a sequence's
length leave its state unchanged and write zeros to Y) and the activation functions.
Reverse directions walk ``t = T-1 .. 0``; with masking this starts each sequence at its own
last valid step, as ONNX requires.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from dist_rt.ops._elementwise import widen
from dist_rt.ops._extra_util import fail
from dist_rt.ops._op import Op, TensorDesc, check_inputs

_WITH_ALPHA = {"affine", "leakyrelu", "thresholdedrelu", "scaledtanh", "hardsigmoid", "elu"}
_WITH_BETA = {"affine", "scaledtanh", "hardsigmoid"}
_DEFAULT_ALPHA = {"leakyrelu": 0.01, "thresholdedrelu": 1.0, "hardsigmoid": 0.2, "elu": 1.0,
                  "affine": 1.0, "scaledtanh": 1.0}
_DEFAULT_BETA = {"hardsigmoid": 0.5, "affine": 0.0, "scaledtanh": 1.0}


def activation(xp: Any, name: str, alpha: float | None, beta: float | None) -> Callable:
    """The activation function called ``name`` (ONNX RNN activation names)."""
    key = name.lower()
    a = _DEFAULT_ALPHA.get(key, 0.0) if alpha is None else alpha
    b = _DEFAULT_BETA.get(key, 0.0) if beta is None else beta
    table = {
        "sigmoid": lambda v: 1 / (1 + xp.exp(-v)),
        "tanh": xp.tanh,
        "relu": lambda v: xp.maximum(v, 0),
        "affine": lambda v: a * v + b,
        "leakyrelu": lambda v: xp.where(v >= 0, v, a * v),
        "thresholdedrelu": lambda v: xp.where(v > a, v, 0),
        "scaledtanh": lambda v: a * xp.tanh(b * v),
        "hardsigmoid": lambda v: xp.clip(a * v + b, 0, 1),
        "elu": lambda v: xp.where(v >= 0, v, a * (xp.exp(v) - 1)),
        "softsign": lambda v: v / (1 + xp.abs(v)),
        "softplus": lambda v: xp.log1p(xp.exp(v)),
    }
    if key not in table:
        raise ValueError(f"activation {name!r} is not supported")
    return table[key]


def activations(xp: Any, layer: Any, defaults: list[str], directions: int) -> list[list]:
    """Per direction, the list of activation functions (attributes or defaults)."""
    names = list(layer.attr("activations", None) or defaults * directions)
    if len(names) != len(defaults) * directions:
        raise fail(layer, f"activations {names} must list {len(defaults)} per direction")
    alphas = list(layer.attr("activation_alpha", None) or [])
    betas = list(layer.attr("activation_beta", None) or [])
    funcs = []
    for name in names:
        key = name.lower()
        a = alphas.pop(0) if key in _WITH_ALPHA and alphas else None
        b = betas.pop(0) if key in _WITH_BETA and betas else None
        funcs.append(activation(xp, name, a, b))
    per = len(defaults)
    return [funcs[d * per:(d + 1) * per] for d in range(directions)]


def num_directions(layer: Any) -> int:
    """1 for forward/reverse, 2 for bidirectional."""
    direction = layer.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise fail(layer, f"direction {direction!r} is not forward, reverse or bidirectional")
    return 2 if direction == "bidirectional" else 1


def infer_outputs(layer: Any, inputs: Any, with_cell: bool) -> list[TensorDesc]:
    """Y, Y_h (and Y_c) descriptions from X's and W's shapes."""
    x = inputs[0]
    dirs = num_directions(layer)
    hidden = layer.attr("hidden_size", None)
    if hidden is None and inputs[2] is not None and inputs[2].shape is not None:
        hidden = inputs[2].shape[-1]
    y = yh = None
    if x.shape is not None and len(x.shape) == 3:
        if layer.attr("layout", 0):
            batch, seq = x.shape[0], x.shape[1]
            y, yh = (batch, seq, dirs, hidden), (batch, dirs, hidden)
        else:
            seq, batch = x.shape[0], x.shape[1]
            y, yh = (seq, dirs, batch, hidden), (dirs, batch, hidden)
    outs = [TensorDesc(x.dtype, y), TensorDesc(x.dtype, yh)]
    if with_cell:
        outs.append(TensorDesc(x.dtype, yh))
    return outs[:len(layer.outputs)]


def run_recurrence(xp: Any, layer: Any, inputs: Any, gates: int, defaults: list[str],
                   cell: Callable, with_cell: bool) -> list[Any]:
    """Run a recurrent op over X in every direction.

    Args:
        xp: Array module.
        layer: The layer.
        inputs: X, W, R, B, sequence_lens, initial_h, (initial_c, P).
        gates: Number of gates G (W is (dirs, G*H, I)).
        defaults: Default activation names of one direction.
        cell: ``cell(xw, h, c, r, rb, p, acts, clip) -> (h, c)`` for one step.
        with_cell: True for LSTM (a cell state and Y_c).

    Returns:
        Y, Y_h (and Y_c) in the layer's layout.
    """
    inputs = list(inputs) + [None] * (8 - len(inputs))
    x, w, r, b, lens, h0, c0, p = inputs[:8]
    layout = int(layer.attr("layout", 0))
    dtype = x.dtype
    x = widen(x)
    if x.ndim != 3:
        raise fail(layer, f"X has shape {x.shape}, expected rank 3")
    if layout:
        x = x.transpose(1, 0, 2)
        h0 = None if h0 is None else h0.transpose(1, 0, 2)
        c0 = None if c0 is None else c0.transpose(1, 0, 2)
    seq, batch, _ = x.shape
    dirs = num_directions(layer)
    hidden = int(layer.attr("hidden_size", r.shape[-1]))
    if w.shape[0] != dirs or w.shape[1] != gates * hidden or r.shape[1:] != (gates * hidden,
                                                                              hidden):
        raise fail(layer, f"W {w.shape} / R {r.shape} do not fit {dirs} direction(s), "
                          f"{gates} gates and hidden_size {hidden}")
    w, r = widen(w), widen(r)
    b = xp.zeros((dirs, 2 * gates * hidden), dtype=x.dtype) if b is None else widen(b)
    acts = activations(xp, layer, defaults, dirs)
    clip = layer.attr("clip", None)
    lens = None if lens is None else xp.asarray(lens).astype("int64")
    reverse_only = layer.attr("direction", "forward") == "reverse"
    ys, hs, cs = [], [], []
    for d in range(dirs):
        h = xp.zeros((batch, hidden), x.dtype) if h0 is None else widen(h0[d]).astype(x.dtype)
        c = xp.zeros((batch, hidden), x.dtype) if c0 is None else widen(c0[d]).astype(x.dtype)
        pd = None if p is None else widen(p[d])
        xw = xp.matmul(x, w[d].T) + b[d, :gates * hidden]  # (T, B, G*H)
        rb = b[d, gates * hidden:]
        y = xp.zeros((seq, batch, hidden), dtype=x.dtype)
        steps = range(seq - 1, -1, -1) if (d == 1 or reverse_only) else range(seq)
        for t in steps:
            h_new, c_new = cell(xw[t], h, c, r[d], rb, pd, acts[d], clip)
            if lens is not None:
                live = (t < lens)[:, None]
                h_new = xp.where(live, h_new, h)
                c_new = xp.where(live, c_new, c)
                y[t] = xp.where(live, h_new, 0)
            else:
                y[t] = h_new
            h, c = h_new, c_new
        ys.append(y)
        hs.append(h)
        cs.append(c)
    y = xp.stack(ys, axis=1)  # (T, dirs, B, H)
    yh, yc = xp.stack(hs), xp.stack(cs)
    if layout:
        y, yh, yc = y.transpose(2, 0, 1, 3), yh.transpose(1, 0, 2), yc.transpose(1, 0, 2)
    outs = [y.astype(dtype), yh.astype(dtype)] + ([yc.astype(dtype)] if with_cell else [])
    return outs[:len(layer.outputs)]


def clipped(xp: Any, v: Any, clip: float | None) -> Any:
    """``v`` clipped to ``[-clip, clip]`` when ``clip`` is set."""
    return v if clip is None else xp.clip(v, -clip, clip)


class RecurrentOp(Op):
    """Base of RNN, GRU and LSTM: the input count check, output descriptions, the recurrence.

    Subclasses set ``gates``, ``default_activations`` and (LSTM) ``with_cell``, and write
    their step as a ``cell`` passed to :meth:`recur`.
    """

    #: Number of gates G (W is (dirs, G*H, I)).
    gates: ClassVar[int] = 1
    #: Default activation names of one direction.
    default_activations: ClassVar[tuple[str, ...]] = ("Tanh",)
    #: True for LSTM: inputs initial_c and P, a cell state and output Y_c.
    with_cell: ClassVar[bool] = False

    @classmethod
    def infer(cls, layer: Any, inputs: Any) -> list[TensorDesc]:
        """Check the input count; describe Y, Y_h (and Y_c)."""
        check_inputs(layer, inputs, 3, 8 if cls.with_cell else 6)
        return infer_outputs(layer, inputs, with_cell=cls.with_cell)

    @classmethod
    def recur(cls, xp: Any, layer: Any, inputs: Any, cell: Callable) -> list[Any]:
        """:func:`run_recurrence` with this op's gates, activations and cell state."""
        return run_recurrence(xp, layer, inputs, cls.gates, list(cls.default_activations),
                              cell, with_cell=cls.with_cell)

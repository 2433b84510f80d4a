"""Tactics: interchangeable implementations of one layer, and their registry.

A *tactic* computes exactly what the layer's op computes, by another route whose speed
depends on the shapes and the machine (TensorRT's tactics). The tactic-selection pass
(:mod:`dist_rt.builder.passes.tactics`) times the applicable ones on the target device and
records the fastest in ``layer.metadata["tactic"]``; the backends honour that name at run time.

Every (backend, domain, op type) lists its tactics explicitly in :data:`CPU_TACTICS` (here) or
``TACTICS`` of :mod:`dist_rt.runtime.cuda.tactics` (loaded only when the CUDA backend is used,
because it imports CuPy). The first tactic of each list is always :data:`DEFAULT`: the
backend's ordinary path (the op's reference ``run`` on the CPU, the fused-kernel dispatch on
CUDA). A tactic's ``run`` may decline (return None) when the inputs of a call do not fit it
(other shapes under a dynamic profile); the backend then takes the default path, so a
recorded tactic never changes what is computed, only how fast.

CPU tactics (NumPy):

==================  ===============  ===========================================================
op                  tactic           route
==================  ===============  ===========================================================
MatMul              ``flat2d``       (..., M, K) @ (K, N) as one 2-D GEMM over flattened rows
                                     (NumPy's batched matmul calls BLAS once per batch item)
MatMul              ``einsum``       ``np.einsum(..., optimize=True)`` (tensordot / BLAS route)
Conv                ``pointwise``    1x1 kernels without padding: one matmul, no im2col copy
Conv                ``depthwise``    group == C, one input channel per group: K multiply-adds
                                     of strided views instead of C tiny matmuls
Conv                ``tap_gemm``     group 1: one (M, C) @ (C, O) GEMM per kernel tap,
                                     accumulated, never materializing the K-times im2col
dist_rt::Attention  ``chunked``      query blocks of :data:`CHUNK_ROWS`; causal blocks score
                                     only the keys their frontier reaches (~half the work)
==================  ===============  ===========================================================
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dist_rt.errors import DistRtError, ExecutionError
from dist_rt.ops._attention import attend, causal_bias, mask_to_bias, score_dtype
from dist_rt.ops._window import pad_spatial, window_params
from dist_rt.ops.fused_attention import output_layout

#: Name of the backend's ordinary path; every registry list starts with it.
DEFAULT = "default"
#: Query rows per block of the chunked CPU attention.
CHUNK_ROWS = 128

#: ``(shape, dtype)`` of each layer input as the pass sees it (None: omitted input).
Spec = tuple[tuple[int, ...], np.dtype] | None
RunFn = Callable[[Any, Sequence[Any], Any], "list[Any] | None"]


def _always(layer: Any, specs: Sequence[Spec]) -> bool:
    return True


@dataclass(frozen=True)
class Tactic:
    """One implementation of a layer.

    Attributes:
        name: Stored in ``layer.metadata["tactic"]``, the plan file and the timing cache.
        run: ``run(layer, inputs, rt) -> outputs``, or None when declining this call;
            None for :data:`DEFAULT` (the backend's own path).
        applies: ``applies(layer, specs) -> bool`` for the static input shapes and dtypes.
    """

    name: str
    run: RunFn | None = None
    applies: Callable[[Any, Sequence[Spec]], bool] = _always


def _is_float(specs: Sequence[Spec], n: int) -> bool:
    return all(s is not None and s[1].kind == "f" for s in specs[:n]) and len(specs) >= n


# -- MatMul ------------------------------------------------------------------------------------

def _matmul_flat2d(layer, inputs, rt):
    a, b = inputs
    if a.ndim < 3 or b.ndim != 2 or a.shape[-1] != b.shape[0]:
        return None
    y = rt.xp.matmul(a.reshape(-1, a.shape[-1]), b)
    return [y.reshape(*a.shape[:-1], b.shape[1])]


def _matmul_einsum(layer, inputs, rt):
    a, b = inputs
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2] or a.dtype != b.dtype:
        return None
    return [rt.xp.einsum("...mk,...kn->...mn", a, b, optimize=True)]


def _matmul_flat2d_applies(layer, specs):
    return _is_float(specs, 2) and len(specs[0][0]) >= 3 and len(specs[1][0]) == 2


def _matmul_einsum_applies(layer, specs):
    return (_is_float(specs, 2) and len(specs[0][0]) >= 2 and len(specs[1][0]) >= 2
            and specs[0][1] == specs[1][1])


# -- Conv --------------------------------------------------------------------------------------

def _conv_setup(layer, inputs):
    """``(x, w, bias, group, strides, dilations, pads, out)`` or None when shapes do not fit."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    group = int(layer.attr("group", 1))
    if x.ndim < 3 or w.ndim != x.ndim or x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        return None
    strides, dilations, pads, out = window_params(layer, x.shape[2:], list(w.shape[2:]))
    return x, w, bias, group, strides, dilations, pads, out


def _finish_conv(y, bias, x):
    if bias is not None:
        y = y + bias.reshape((-1,) + (1,) * (y.ndim - 2))
    return [y.astype(x.dtype, copy=False)]


def _conv_pointwise(layer, inputs, rt):
    setup = _conv_setup(layer, inputs)
    if setup is None:
        return None
    x, w, bias, group, strides, _, pads, out = setup
    if group != 1 or any(k != 1 for k in w.shape[2:]) or any(pads):
        return None
    xs = x[(Ellipsis, *(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides,
                                                                      strict=True)))]
    n, c = x.shape[:2]
    y = rt.xp.matmul(w.reshape(w.shape[0], c), xs.reshape(n, c, -1))
    return _finish_conv(y.reshape(n, w.shape[0], *out), bias, x)


def _taps(x, kernel, strides, dilations, out):
    """``(tap index, strided view)`` of every kernel offset of a padded ``x``."""
    for t, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        index = tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                      for o, d, s, n in zip(offset, dilations, strides, out, strict=True))
        yield t, x[(Ellipsis, *index)]


def _conv_depthwise(layer, inputs, rt):
    setup = _conv_setup(layer, inputs)
    if setup is None:
        return None
    x, w, bias, group, strides, dilations, pads, out = setup
    c, m = x.shape[1], w.shape[0]
    if group != c or w.shape[1] != 1:
        return None
    nd = len(out)
    xpad = pad_spatial(rt.xp, x, pads[:nd], pads[nd:])
    if m != c:  # channel multiplier: output m reads input channel m // (M / C)
        xpad = rt.xp.repeat(xpad, m // c, axis=1)
    wt = w.reshape(m, -1)
    y = None
    for t, view in _taps(xpad, w.shape[2:], strides, dilations, out):
        term = view * wt[:, t].reshape((m,) + (1,) * nd)
        y = term if y is None else y + term
    return _finish_conv(y, bias, x)


def _conv_tap_gemm(layer, inputs, rt):
    setup = _conv_setup(layer, inputs)
    if setup is None:
        return None
    x, w, bias, group, strides, dilations, pads, out = setup
    if group != 1:
        return None
    nd = len(out)
    n, c, m = x.shape[0], x.shape[1], w.shape[0]
    xpad = pad_spatial(rt.xp, x, pads[:nd], pads[nd:])
    wt = w.reshape(m, c, -1)
    y = None
    for t, view in _taps(xpad, w.shape[2:], strides, dilations, out):
        term = rt.xp.matmul(wt[:, :, t], view.reshape(n, c, -1))
        y = term if y is None else y + term
    return _finish_conv(y.reshape(n, m, *out), bias, x)


def _conv_group(layer, specs) -> tuple[int, int, int, tuple[int, ...]] | None:
    if not _is_float(specs, 2) or len(specs[0][0]) < 3 or len(specs[1][0]) != len(specs[0][0]):
        return None
    (xs, _), (ws, _) = specs[0], specs[1]
    return int(layer.attr("group", 1)), xs[1], ws[0], tuple(ws[2:])


def _pointwise_applies(layer, specs):
    g = _conv_group(layer, specs)
    pads = layer.attr("pads", None) or []
    return (g is not None and g[0] == 1 and all(k == 1 for k in g[3]) and not any(pads)
            and layer.attr("auto_pad", "NOTSET") in ("NOTSET", "VALID", b"NOTSET", b"VALID"))


def _depthwise_applies(layer, specs):
    g = _conv_group(layer, specs)
    return g is not None and g[0] == g[1] > 1 and g[2] % g[1] == 0 and specs[1][0][1] == 1


def _tap_gemm_applies(layer, specs):
    g = _conv_group(layer, specs)
    return g is not None and g[0] == 1 and math.prod(g[3]) > 1


# -- dist_rt::Attention ------------------------------------------------------------------------

def _attention_chunked(layer, inputs, rt):
    """Attention by query blocks; causal blocks drop the keys past their frontier."""
    xp = rt.xp
    q, k, v = inputs[:3]
    mask = inputs[3] if len(inputs) > 3 else None
    if not (q.ndim == k.ndim == v.ndim == 4) or (mask is not None and mask.ndim > 4):
        return None
    b, hq, s, d = q.shape
    skv = k.shape[2]
    heads, kv_heads = int(layer.attr("num_heads", 0)), int(layer.attr("kv_num_heads", 0))
    if k.shape[1] == 0 or hq % k.shape[1] or (heads and kv_heads
                                               and hq != k.shape[1] * (heads // kv_heads)):
        return None
    dt = score_dtype(q.dtype)
    bias = None
    if mask is not None:
        bias = mask_to_bias(xp, mask, dt)
        bias = bias.reshape((1,) * (4 - bias.ndim) + tuple(bias.shape))
        try:
            np.broadcast_shapes(bias.shape, (b, hq, s, skv))
        except ValueError:
            return None  # the reference raises the proper error
    scale = layer.attr("scale", None)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    causal = bool(int(layer.attr("causal", 0)))
    where = f"layer '{layer.name}' (Attention): "
    ys = []
    for i0 in range(0, s, CHUNK_ROWS):
        i1 = min(s, i0 + CHUNK_ROWS)
        # Row i sees keys j <= i + (Skv - S); keep at least one key so an all-masked block
        # still returns zeros through the bias rather than an empty softmax.
        keys = max(1, min(skv, i1 + skv - s)) if causal else skv
        part = None
        if bias is not None:
            part = bias[:, :, i0:i1] if bias.shape[2] > 1 else bias
            part = part[..., :keys] if part.shape[3] > 1 else part
        if causal:
            frontier = causal_bias(xp, i1 - i0, keys, i0 + skv - s, dt)
            part = frontier if part is None else part + frontier
        y, _ = attend(xp, q[:, :, i0:i1], k[:, :, :keys], v[:, :, :keys], scale=scale,
                      bias=part, where=where)
        ys.append(y)
    y = ys[0] if len(ys) == 1 else xp.concatenate(ys, axis=2)
    if output_layout(layer) == "bshd":  # the layout fuse_attention_layout asked for
        y = xp.ascontiguousarray(y.transpose(0, 2, 1, 3))
    return [y]


def _chunked_applies(layer, specs):
    return (_is_float(specs, 3) and all(len(s[0]) == 4 for s in specs[:3])
            and specs[0][0][2] >= 2 * CHUNK_ROWS)


#: (domain, op type) -> CPU tactics, the default first.
CPU_TACTICS: dict[tuple[str, str], tuple[Tactic, ...]] = {
    ("", "MatMul"): (Tactic(DEFAULT),
                     Tactic("flat2d", _matmul_flat2d, _matmul_flat2d_applies),
                     Tactic("einsum", _matmul_einsum, _matmul_einsum_applies)),
    ("", "Conv"): (Tactic(DEFAULT),
                   Tactic("pointwise", _conv_pointwise, _pointwise_applies),
                   Tactic("depthwise", _conv_depthwise, _depthwise_applies),
                   Tactic("tap_gemm", _conv_tap_gemm, _tap_gemm_applies)),
    ("dist_rt", "Attention"): (Tactic(DEFAULT),
                               Tactic("chunked", _attention_chunked, _chunked_applies)),
}

_TABLES: dict[str, dict[tuple[str, str], tuple[Tactic, ...]]] = {"cpu": CPU_TACTICS}


def registry(backend: str) -> dict[tuple[str, str], tuple[Tactic, ...]]:
    """The tactic table of ``backend`` (``"cpu"`` or ``"cuda"``; CUDA's loads CuPy)."""
    table = _TABLES.get(backend)
    if table is None:
        if backend != "cuda":
            return {}
        table = _TABLES[backend] = importlib.import_module("dist_rt.runtime.cuda.tactics").TACTICS
    return table


def _key(layer: Any) -> tuple[str, str]:
    return ("" if layer.domain in ("", "ai.onnx") else layer.domain, layer.op_type)


def tactics_for(backend: str, layer: Any) -> tuple[Tactic, ...]:
    """Every tactic registered for ``layer``'s op on ``backend`` (the default first)."""
    return registry(backend).get(_key(layer), ())


def applicable(backend: str, layer: Any, specs: Sequence[Spec]) -> list[Tactic]:
    """The tactics of ``layer`` whose ``applies`` accepts these static input specs."""
    return [t for t in tactics_for(backend, layer) if t.applies(layer, specs)]


def find(backend: str, layer: Any, name: str) -> Tactic | None:
    """The tactic called ``name`` for ``layer`` on ``backend``, or None."""
    for tactic in tactics_for(backend, layer):
        if tactic.name == name:
            return tactic
    return None


def run_tactic(backend: str, layer: Any, name: str, inputs: Sequence[Any],
               rt: Any) -> list[Any] | None:
    """Run the recorded tactic ``name``; None means "take the default path".

    Raises:
        ExecutionError: The tactic failed (names the layer and the tactic).
    """
    tactic = find(backend, layer, name)
    if tactic is None or tactic.run is None:
        return None
    try:
        return tactic.run(layer, inputs, rt)
    except DistRtError:
        raise
    except (ValueError, TypeError, IndexError, MemoryError) as exc:
        raise ExecutionError(f"layer '{layer.name}' ({layer.op_type}): tactic '{name}' "
                             f"failed: {exc}") from exc

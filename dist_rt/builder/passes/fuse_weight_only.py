"""Fuse matmuls on a dequantized constant int8/uint8 weight into dist_rt::WeightOnlyMatMul.

Patterns (``DQ`` is ``DequantizeLinear(Wq, scale, zero_point?)`` over a constant 2-D
int8/uint8 ``Wq``, with one scale per output column or one per tensor)::

    MatMul(A, DQ(Wq (K, N), axis=1))                            hand-written QDQ, MatMul
    Gemm(A, DQ(Wq (N, K), axis=0), C?, transB=1)                quantize_static, Gemm
    Gemm(A, DQ(Wq (K, N), axis=1), C?, transB=0)
    MatMul(A, Transpose(DQ(Wq (N, K), axis=0), perm=[1, 0]))    exported nn.Linear

each become ``WeightOnlyMatMul(A, Wq (K, N), scale (N,) float32, zero_point?)``, followed by
``Add(Y, C)`` for a Gemm bias (Gemm's ``alpha`` is folded into the scale). This is what
``onnxruntime.quantization.quantize_static(quant_format=QuantFormat.QDQ, per_channel=True,
weight_type=QuantType.QInt8)`` writes for MatMul (first form) and ``Gemm(transB=1)`` (second
form); its activation Q/DQ pairs stay as they are, A is just a float tensor here.
``quantize_dynamic`` writes ``MatMulInteger`` on int8 activations instead, which is not a
weight-only pattern and is left alone.

Why before constant folding: ``fold_constants`` folds a DQ whose output is at most twice the
bytes of its inputs, which a DQ to fp16 (an fp16 model's fp16 scale) is, so the int8 weight
would become an fp16 constant before any fusion saw it; the importer already folds the DQs of
weights up to 64K elements, too small to matter for bandwidth.

Why only on CUDA (``BuilderConfig.device`` ``"cuda"``, or ``"auto"`` finding a GPU): the win
is a GEMM kernel that reads 8-bit weights and dequantizes in registers
(``runtime/cuda/w8.py``). On the CPU the NumPy reference would dequantize the whole weight on
every call, exactly what the unfused DQ already does, so the CPU keeps today's graph.

Choices: the scale is stored as float32 (the precision pass leaves it so: it is N floats,
and rounding it to bf16 would bias whole columns); a zero point that is all zeros (the usual
symmetric int8 export) is dropped; a transposed weight is transposed once, here.

:func:`merge` (run after ``fuse_parallel_matmul``) then merges WeightOnlyMatMuls that read one
activation (q/k/v, gate/up) into one plus a Split, as that pass does for float weights: a
decode step then streams all the int8 columns in one kernel.

Refit: Wq read as it is and a float32 scale read as it is refit in place, merged ones by
slice (``record_concat``); a weight this pass transposes, converts or drops is recorded as
folded, so ``Engine.refit`` asks for a rebuild instead of leaving a stale copy.
"""

from __future__ import annotations

import numpy as np

from dist_rt.builder.passes import BuildState, on_cuda
from dist_rt.builder.passes.fuse_util import (
    ONNX_DOMAINS,
    Matcher,
    add_fused,
    anchors,
    concat_columns,
    fused_from,
    prune_fused,
    split_columns,
)
from dist_rt.builder.refit import FOLDED_WEIGHTS, record_concat
from dist_rt.network import Layer, Network, Tensor
from dist_rt.ops.weight_only_matmul import WEIGHT_DTYPES

F32 = np.dtype(np.float32)


def _derived(network: Network, source: Tensor, why: str) -> None:
    """Record that ``source`` (if a source weight) now lives on as a derived copy."""
    if source.name in set(network.metadata.get("source_weights") or ()):
        network.metadata.setdefault(FOLDED_WEIGHTS, {}).setdefault(source.name, why)


def _dequantized(b: Tensor | None) -> tuple[Layer, list[Layer], bool] | None:
    """``(DQ layer, layers between it and the reader, transposed)`` when ``b`` is
    ``DQ(...)`` or ``Transpose(DQ(...), perm=[1, 0])``, else None."""
    layer = None if b is None else b.producer
    chain: list[Layer] = []
    if layer is not None and layer.op_type == "Transpose" and layer.domain in ONNX_DOMAINS:
        perm = layer.attr("perm")
        if perm is not None and list(perm) != [1, 0]:
            return None
        chain.append(layer)
        layer = layer.inputs[0].producer if layer.inputs[0] is not None else None
    if layer is None or layer.op_type != "DequantizeLinear" or layer.domain not in ONNX_DOMAINS:
        return None
    return layer, chain, bool(chain)


def _quantized_weight(dq: Layer, out_axis: int,
                      dtype: np.dtype) -> tuple[Tensor, Tensor, Tensor | None] | None:
    """``(Wq, scale, zero point)`` of a DQ whose output (of ``dtype``) fits the op: constant
    2-D int8/uint8 Wq, scale per tensor or along ``out_axis`` (Wq's output-column axis)."""
    wq, scale = dq.inputs[0], dq.inputs[1]
    zp = dq.inputs[2] if len(dq.inputs) > 2 else None
    if (wq is None or not wq.is_constant or wq.dtype not in WEIGHT_DTYPES or wq.rank != 2
            or scale is None or not scale.is_constant or scale.dtype is None
            or (zp is not None and (not zp.is_constant or zp.dtype != wq.dtype))
            or int(dq.attr("block_size", 0) or 0) or dq.outputs[0].dtype != dtype):
        return None
    if scale.weights.size != 1:
        axis = int(dq.attr("axis", 1))
        if (not -2 <= axis < 2 or axis % 2 != out_axis or scale.rank != 1
                or scale.shape[0] != wq.shape[out_axis]):
            return None
    if zp is not None and zp.weights.size != scale.weights.size:
        return None
    return wq, scale, zp


class _Rewriter:
    """Rewrites matching MatMul/Gemm layers; derived constants are made once per source."""

    def __init__(self, network: Network):
        self.network = network
        self.made: dict[tuple[str, str], Tensor] = {}
        self.fused = 0
        self.transposed = 0

    def _constant(self, source: Tensor, kind: str, value: np.ndarray, why: str) -> Tensor:
        key = (source.name, kind)
        if key not in self.made:
            name = self.network.unique_name(f"{source.name}.{kind}")
            self.made[key] = self.network.add_constant(name, value)
            _derived(self.network, source, why)
        return self.made[key]

    def rewrite(self, layer: Layer) -> None:
        """Replace ``layer`` when it is one of the module's patterns (else leave it)."""
        a, b = layer.inputs[0], layer.inputs[1]
        bias, alpha, trans_b = None, 1.0, False
        if layer.op_type == "Gemm":
            bias = layer.inputs[2] if len(layer.inputs) > 2 else None
            alpha, trans_b = float(layer.attr("alpha", 1.0)), bool(layer.attr("transB", 0))
            if layer.attr("transA", 0) or (bias is not None and
                                            float(layer.attr("beta", 1.0)) != 1.0):
                return
        if a is None or a.is_constant or a.dtype is None:
            return
        found = _dequantized(b)
        if found is None:
            return
        dq, chain, transposed = found
        trans = transposed != trans_b  # Wq is stored (N, K)
        params = _quantized_weight(dq, 0 if trans else 1, a.dtype)
        if params is None:
            return
        wq, scale, zp = params
        why = f"{layer.op_type} layer '{layer.name}' (fused into WeightOnlyMatMul)"
        if trans:
            wq = self._constant(wq, "T", np.ascontiguousarray(wq.weights.numpy().T), why)
            self.transposed += 1
        if scale.dtype != F32 or alpha != 1.0:
            value = scale.weights.numpy().astype(np.float32) * np.float32(alpha)
            scale = self._constant(scale, f"f32x{alpha:g}", value, why)
        if zp is not None and not np.any(zp.weights.numpy()):
            _derived(self.network, zp, why + ", all zero: dropped")
            zp = None
        inputs = [a, wq, scale] + ([zp] if zp is not None else [])
        replaces = [dq, *chain, layer]
        out, name = layer.outputs[0], f"{layer.name}.w8"
        if bias is None:
            add_fused(self.network, "WeightOnlyMatMul", inputs, {}, name=name, outputs=[out],
                      replaces=replaces)
        else:
            self.network.opsets.setdefault("dist_rt", 1)
            woq = self.network.add_layer(
                "WeightOnlyMatMul", inputs, name=self.network.unique_name(name),
                outputs=[self.network.unique_name(f"{out.name}.w8")], domain="dist_rt")
            woq.metadata["fused_from"] = fused_from(replaces)
            add_fused(self.network, "Add", [woq.outputs[0], bias], {},
                      name=f"{layer.name}.bias", outputs=[out], replaces=[layer], domain="")
        self.fused += 1


def run(network: Network, state: BuildState) -> str:
    """Fuse every MatMul/Gemm on a dequantized constant 8-bit weight (CUDA builds only).

    Args:
        network: Edited in place.
        state: Build state; nothing is done unless the build is for CUDA.

    Returns:
        A summary line.
    """
    if not on_cuda(state):
        return "off: not a CUDA build, DequantizeLinear kept"
    rewriter = _Rewriter(network)
    for layer in anchors(network, "MatMul") + anchors(network, "Gemm"):
        rewriter.rewrite(layer)
    prune_fused(network, rewriter.fused)
    return (f"{rewriter.fused} MatMul/Gemm on int8 weights fused "
            f"({rewriter.transposed} weights transposed)")


# -- merging parallel WeightOnlyMatMuls -------------------------------------------------------

def _concat_params(network: Network, parts: list[Tensor | None], sizes: list[int],
                   dtype: np.dtype, name: str) -> Tensor:
    """One (sum N_i,) constant of ``parts`` broadcast to their column counts (None: zeros)."""
    arrays, sliceable = [], True
    for t, n in zip(parts, sizes, strict=True):
        if t is None:
            arrays.append(np.zeros(n, dtype))
            sliceable = False
            continue
        value = t.weights.numpy()
        sliceable &= value.shape == (n,) and value.dtype == dtype
        arrays.append(np.broadcast_to(value.reshape(-1).astype(dtype), (n,)))
    merged = network.add_constant(network.unique_name(name), np.concatenate(arrays))
    if sliceable:
        record_concat(network, merged.name, parts, axis=-1)
    else:
        for t in parts:
            if t is not None:
                _derived(network, t, f"WeightOnlyMatMul merge into '{merged.name}'")
    return merged


def _merge(network: Network, group: list[Layer]) -> None:
    """Replace the WeightOnlyMatMuls of ``group`` by one on concatenated columns + Split."""
    a, first = group[0].inputs[0], group[0]
    wqs = [lay.inputs[1] for lay in group]
    sizes = [int(w.shape[1]) for w in wqs]
    w_cat = network.add_constant(network.unique_name(f"{wqs[0].name}.merged"),
                                 concat_columns([w.weights.numpy() for w in wqs]))
    record_concat(network, w_cat.name, wqs, axis=-1)  # refit writes Wq_i's column slice
    scales = [lay.inputs[2] for lay in group]
    inputs = [a, w_cat, _concat_params(network, scales, sizes, F32, f"{scales[0].name}.merged")]
    zps = [lay.inputs[3] if len(lay.inputs) > 3 else None for lay in group]
    if any(z is not None for z in zps):
        inputs.append(_concat_params(network, zps, sizes, wqs[0].dtype,
                                     f"{wqs[0].name}.zero_point.merged"))
    network.opsets.setdefault("dist_rt", 1)
    woq = network.add_layer("WeightOnlyMatMul", inputs, domain="dist_rt",
                            name=network.unique_name(f"{first.name}.merged"))
    woq.metadata["fused_from"] = [n for lay in group
                                  for n in lay.metadata.get("fused_from", [lay.name])]
    split_columns(network, woq, group, sizes)


def merge(network: Network, state: BuildState) -> str:
    """Merge WeightOnlyMatMuls reading one activation with private constant weights.

    Grouped by (activation, K, weight dtype); the scales (float32) and zero points are
    concatenated along N, a missing zero point becoming zeros of its columns.

    Args:
        network: Edited in place.
        state: Build state (unused: the merge is exact).

    Returns:
        A summary line.
    """
    m = Matcher(network)
    groups: dict[tuple, list[Layer]] = {}
    for layer in anchors(network, "WeightOnlyMatMul", ("dist_rt",)):
        a, w = layer.inputs[0], layer.inputs[1]
        if (a.is_constant or w.shape is None or not m.private(w)
                or not all(t is None or t.is_constant for t in layer.inputs[1:])):
            continue
        groups.setdefault((a.name, w.shape[0], np.dtype(w.dtype).str), []).append(layer)
    merged = [g for g in groups.values() if len(g) > 1]
    for group in merged:
        _merge(network, group)
    prune_fused(network, len(merged))
    return f"{sum(len(g) for g in merged)} WeightOnlyMatMuls merged into {len(merged)}"

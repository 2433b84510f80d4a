"""Weight-only int8 quantization of an ONNX model's MatMul weights, in QDQ form.

``quantize_matmul_weights`` rewrites every ``MatMul(A, W)`` whose W is a 2-D float
initializer read by nothing else into ``MatMul(A, DequantizeLinear(Wq, scale, axis=1))``:
symmetric, one scale per output column, ``Wq = clip(round(W / scale), -127, 127)`` int8 and
``scale = max|W[:, n]| / 127`` stored in W's dtype (so the DequantizeLinear output, and the
MatMul, keep the model's dtype). This is the graph ``onnxruntime.quantization`` writes for
weights (without its activation Q/DQ pairs); ``builder/passes/fuse_weight_only.py`` turns it
into ``dist_rt::WeightOnlyMatMul`` on CUDA. Used by the benchmarks and tests to make
quantized versions of the zoo models.

A DequantizeLinear with a 16-bit scale needs opset 19, so a model with fp16/bf16 weights has
its default-domain opset raised to 19 (the opset-18 ops the zoo models use mean the same at
19).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: First default-domain opset whose DequantizeLinear takes a float16/bfloat16 scale.
_DQ_16BIT_SCALE_OPSET = 19


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-column int8 quantization of a (K, N) float weight.

    Returns:
        ``(Wq int8 (K, N), scale float32 (N,))`` with ``W ~= Wq * scale``; an all-zero
        column gets scale 1.
    """
    w32 = np.asarray(w, dtype=np.float32)
    scale = np.abs(w32).max(axis=0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(w32 / scale), -127, 127).astype(np.int8)
    return q, scale


def quantize_matmul_weights(model: onnx.ModelProto, min_elements: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` with its MatMul weights int8, behind DequantizeLinear nodes.

    Args:
        model: A model with its initializers loaded (no external data left on disk).
        min_elements: Weights with fewer elements stay float.

    Returns:
        The rewritten copy; the weights keep their names with ``_quantized`` / ``_scale``
        suffixes for the new initializers.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    nodes, wide_scale = [], False
    for node in graph.node:
        w_name = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else ""
        init = inits.get(w_name)
        if (init is None or readers.get(w_name) != 1 or w_name in outputs
                or len(init.dims) != 2 or int(np.prod(init.dims)) < min_elements):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(init)
        if w.dtype.kind != "f" and w.dtype.name != "bfloat16":
            nodes.append(node)
            continue
        q, scale = quantize_weights(w)
        wide_scale |= w.dtype != np.float32
        graph.initializer.remove(init)
        graph.initializer.extend([
            numpy_helper.from_array(q, f"{w_name}_quantized"),
            numpy_helper.from_array(scale.astype(w.dtype), f"{w_name}_scale")])
        nodes.append(helper.make_node(
            "DequantizeLinear", [f"{w_name}_quantized", f"{w_name}_scale"], [w_name],
            name=f"{node.name or w_name}/DequantizeLinear", axis=1))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    if wide_scale:
        for opset in out.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, _DQ_16BIT_SCALE_OPSET)
    return out

"""Which constants a GPU backend keeps transposed, (N, K) instead of ONNX's (K, N).

The decode GEMV (:mod:`dist_rt.runtime.cuda.gemv`) streams rows of W, so the CUDA backend
stores the B operand of 16-bit ``MatMul``/``MatMulCast`` layers transposed and hands the
layers its (K, N) ``.T`` view: same values, same shape, another memory order. This module
is only the rule (no CuPy), so it is tested without a GPU; the upload is
:meth:`dist_rt.runtime.backends.Backend.constants_to_device`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dist_rt import dtypes

#: Layers whose input 1 may be a weight stored transposed: their CUDA paths
#: (``kernels.matmul``, ``matmul_cast.matmul_cast``, ``matmul_silu.matmul_silu_mul``) take
#: the (K, N) column-major view (the GEMV reads rows of W, cuBLAS takes it as a transposed
#: operand).
LINEAR_READERS = frozenset({("", "MatMul"), ("dist_rt", "MatMulCast"),
                            ("dist_rt", "MatMulSiluMul")})
#: Element types the GEMV reads (16-byte chunks of 8 values).
LINEAR_DTYPES = (np.dtype(np.float16), dtypes.bfloat16)


def linear_weights(network: Any) -> set[str]:
    """Names of the constants to store transposed.

    A constant qualifies when it is 2-D, fp16 or bf16, K (its first axis) is a multiple of 8,
    it is not a network output, and every layer that reads it is a ``MatMul`` /
    ``MatMulCast`` reading it as B. Any other reader (a tied embedding's Gather, say) keeps
    the weight in ONNX's layout, so no kernel ever sees an unexpected strided array.
    """
    readers: dict[str, list[tuple[Any, int]]] = {}
    for layer in network.layers:
        for i, t in enumerate(layer.inputs):
            if t is not None:
                readers.setdefault(t.name, []).append((layer, i))
    outputs = {t.name for t in network.outputs}
    names = set()
    for t in network.constants:
        shape, dtype = t.weights.shape, np.dtype(t.weights.dtype)
        found = readers.get(t.name)
        if (len(shape) != 2 or shape[0] % 8 or not found or t.name in outputs
                or dtype not in LINEAR_DTYPES):
            continue
        if all(i == 1 and (_domain(layer), layer.op_type) in LINEAR_READERS
               for layer, i in found):
            names.add(t.name)
    return names


def prefetch_schedule(network: Any, linear: set[str] | None = None) -> dict[str, str]:
    """Layer name -> the transposed weight to warm in L2 after that layer's GEMV.

    In execution order, each layer reading a weight of ``linear`` (default
    :func:`linear_weights`) as B is paired with the next such layer's weight; the last wraps
    round to the first, since a decode loop runs the step again. Per layer of a Llama::

        layer i    q/k/v   ->  o_proj     (RoPE, attention run in between)
                   o_proj  ->  gate/up    (the residual add + RMSNorm)
                   gate/up ->  down       (SiLU-gate)
                   down    ->  q/k/v of layer i + 1, and the last ``lm_head`` -> layer 0's

    A layer whose next weight is its own (one GEMV in the network) gets no entry.
    """
    linear = linear_weights(network) if linear is None else linear
    order = [(layer.name, layer.inputs[1].name) for layer in network.layers
             if (_domain(layer), layer.op_type) in LINEAR_READERS and len(layer.inputs) > 1
             and layer.inputs[1] is not None and layer.inputs[1].name in linear]
    return {name: order[(i + 1) % len(order)][1] for i, (name, weight) in enumerate(order)
            if order[(i + 1) % len(order)][1] != weight}


def _domain(layer: Any) -> str:
    return "" if layer.domain in ("", "ai.onnx") else layer.domain

"""onnx's official node test cases for the "extra" ops (losses, RNNs, signal, vision, quant).

Selected like ``test_node_suite_nn.py``: every case whose graph uses one of these ops and
otherwise only registered ops; cases of the new dtypes (int4, float4, float8 fnuz/e8m0)
come from Cast/QuantizeLinear/DequantizeLinear.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from node_harness import check_case, node_cases

from dist_rt.ops import is_supported

OPS = {
    "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss", "RNN", "GRU", "LSTM",
    "GridSample", "AffineGrid", "DFT", "STFT", "NonMaxSuppression", "HannWindow",
    "HammingWindow", "BlackmanWindow", "Swish", "SwiGLU", "Shrink", "CumProd", "BitCast",
    "Det", "TensorScatter", "CausalConvWithState", "LinearAttention", "QLinearMatMul",
    "QLinearConv", "ConvInteger", "DynamicQuantizeLinear", "Col2Im", "MaxUnpool",
}
#: Cases of existing ops that exercise the dtypes added with these ops.
DTYPE_CASES = ("int4", "uint4", "int2", "uint2", "float4", "fnuz", "e8m0", "string")


def _named_outputs(model):
    model = copy.deepcopy(model)
    for i, node in enumerate(model.graph.node):
        for j, name in enumerate(node.output):
            if not name:
                node.output[j] = f"_unused_{i}_{j}"
    return model


def _cases():
    seen: dict[str, int] = {}
    wanted = OPS | {"Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "Equal"}
    for name, model, inputs, outputs in node_cases(wanted):
        ops = {(n.domain, n.op_type) for n in model.graph.node}
        if not all(is_supported(op, domain) for domain, op in ops):
            continue
        if not {op for _, op in ops} & OPS and not any(k in name.lower() for k in DTYPE_CASES):
            continue
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name}_{seen[name]}"
        yield pytest.param(model, inputs, outputs, id=key)


@pytest.mark.parametrize("model,inputs,outputs", list(_cases()))
def test_node_case(model, inputs, outputs):
    half = any(np.asarray(o).dtype.itemsize == 2 and np.asarray(o).dtype.kind in "fV"
               for o in outputs)
    tol = {"rtol": 2e-2, "atol": 1e-2} if half else {"rtol": 1e-3, "atol": 1e-5}
    check_case(_named_outputs(model), inputs, outputs, **tol)

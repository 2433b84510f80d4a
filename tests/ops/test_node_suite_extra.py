"""onnx's official node test cases for the "extra" ops (losses, RNNs, signal, vision, quant).

Selected like ``test_node_suite_nn.py``: every case whose graph uses one of these ops and
otherwise only registered ops; cases of the new dtypes (int4, float4, float8 fnuz/e8m0)
come from Cast/QuantizeLinear/DequantizeLinear.
"""

from __future__ import annotations

import pytest
from node_harness import case_params, check_case, has_16bit_float, named_outputs

OPS = {
    "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss", "RNN", "GRU", "LSTM",
    "GridSample", "AffineGrid", "DFT", "STFT", "NonMaxSuppression", "HannWindow",
    "HammingWindow", "BlackmanWindow", "Swish", "SwiGLU", "Shrink", "CumProd", "BitCast",
    "Det", "TensorScatter", "CausalConvWithState", "LinearAttention", "QLinearMatMul",
    "QLinearConv", "ConvInteger", "DynamicQuantizeLinear", "Col2Im", "MaxUnpool",
}
#: Cases of existing ops that exercise the dtypes added with these ops.
DTYPE_CASES = ("int4", "uint4", "int2", "uint2", "float4", "fnuz", "e8m0", "string")


def _wanted(name: str, ops: set[str]) -> bool:
    """A case of one of OPS, or of a new dtype."""
    return bool(ops & OPS) or any(k in name.lower() for k in DTYPE_CASES)


_CASES = case_params(OPS | {"Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "Equal"},
                     keep=_wanted)


@pytest.mark.parametrize("model,inputs,outputs", list(_CASES))
def test_node_case(model, inputs, outputs):
    half = has_16bit_float(outputs)
    tol = {"rtol": 2e-2, "atol": 1e-2} if half else {"rtol": 1e-3, "atol": 1e-5}
    check_case(named_outputs(model), inputs, outputs, **tol)

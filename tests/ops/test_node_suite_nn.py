"""onnx's official node test cases for the neural-network ops, run on our references.

Selected: every case whose graph uses one of these ops and otherwise only registered ops
(expanded cases built from other helpers' ops are included once those ops exist). Omitted
optional outputs ("" names) are renamed so the Network can hold them, as an importer does.
"""

from __future__ import annotations

import pytest
from node_harness import case_params, check_case, has_16bit_float, named_outputs

OPS = {
    "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "RMSNormalization", "GroupNormalization", "LpNormalization",
    "MeanVarianceNormalization", "LRN", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "GlobalLpPool", "LpPool", "Resize", "Upsample", "RotaryEmbedding",
    "Attention",
}

#: Cases we do not support, with the reason.
KNOWN_UNSUPPORTED: dict[str, str] = {}


@pytest.mark.parametrize("model,inputs,outputs",
                         list(case_params(OPS, skip=KNOWN_UNSUPPORTED)))
def test_node_case(model, inputs, outputs):
    half = has_16bit_float(outputs)
    # bf16/fp16 references round every intermediate; we keep scores and stats in float32,
    # so results differ by about one 16-bit ulp
    tol = {"rtol": 2e-2, "atol": 1e-2} if half else {}
    check_case(named_outputs(model), inputs, outputs, **tol)

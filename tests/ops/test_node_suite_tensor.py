"""onnx's official node test cases for the shape/tensor-movement ops, run on our references.

Selected: every case whose graph uses only ops of this group (expanded cases that also need
math ops are covered by those ops' own suites).
"""

from __future__ import annotations

import pytest
from node_harness import check_case, node_cases

OPS = {
    "Identity", "Dropout", "Constant", "Shape", "Size", "Gather", "GatherElements", "GatherND",
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Expand",
    "ConstantOfShape", "Range", "Trilu", "Flatten", "Pad", "Tile", "ScatterND",
    "ScatterElements", "Scatter", "OneHot", "NonZero", "EyeLike", "DepthToSpace",
    "SpaceToDepth", "Compress", "ReverseSequence", "CenterCropPad", "Unique",
}

#: Cases we do not support, with the reason. Every official case of these ops passes today
#: (training-mode Dropout included: its mask uses the reference's seeded RandomState).
KNOWN_UNSUPPORTED: dict[str, str] = {}


def _cases():
    seen = set()
    for name, model, inputs, outputs in node_cases(OPS):
        if not {n.op_type for n in model.graph.node} <= OPS:
            continue
        key = name if name not in seen else f"{name}_{len(seen)}"
        seen.add(name)
        marks = ([pytest.mark.skip(reason=KNOWN_UNSUPPORTED[name])]
                 if name in KNOWN_UNSUPPORTED else [])
        yield pytest.param(model, inputs, outputs, id=key, marks=marks)


@pytest.mark.parametrize("model,inputs,outputs", list(_cases()))
def test_node_case(model, inputs, outputs):
    check_case(model, inputs, outputs)

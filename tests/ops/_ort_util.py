"""Shared helper of the math-op tests: run one ONNX node on onnxruntime and on our ops."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from node_harness import run_model_on_ops
from onnx import helper, numpy_helper

from dist_rt import dtypes


def one_node_model(op_type, feeds, attrs=None, n_outputs=1, opset=21, consts=None,
                   out_dtypes=None):
    """A ModelProto with one node; ``feeds`` become graph inputs, ``consts`` initializers.

    Input order: feeds then consts unless a key is None (an omitted optional input).
    """
    consts = consts or {}
    names = list(feeds) + list(consts)
    inputs = [helper.make_tensor_value_info(k, dtypes.to_onnx(v.dtype), v.shape)
              for k, v in feeds.items()]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, [n if not n.startswith("_none") else "" for n in names],
                            outs, **(attrs or {}))
    out_vi = [helper.make_tensor_value_info(o, dtypes.to_onnx(d), None)
              for o, d in zip(outs, out_dtypes, strict=True)]
    graph = helper.make_graph([node], "g", inputs, out_vi, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10  # the newest onnxruntime 1.31 reads
    return model


def compare(op_type, feeds, attrs=None, n_outputs=1, opset=21, consts=None, rtol=1e-5,
            atol=1e-6):
    """Run ``op_type`` on onnxruntime and through our ops; assert equal dtypes and values."""
    probe = one_node_model(op_type, feeds, attrs, n_outputs, opset, consts,
                           out_dtypes=[np.float32] * n_outputs)
    ours = run_model_on_ops(probe, list(feeds.values()))
    model = one_node_model(op_type, feeds, attrs, n_outputs, opset, consts,
                           out_dtypes=[o.dtype for o in ours])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, dict(feeds))
    for got, want in zip(ours, ref, strict=True):
        assert got.dtype == want.dtype, f"{op_type}: dtype {got.dtype}, expected {want.dtype}"
        assert got.shape == want.shape, f"{op_type}: shape {got.shape}, expected {want.shape}"
        if want.dtype.kind in "biu":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                       rtol=rtol, atol=atol, equal_nan=True)
    return ours

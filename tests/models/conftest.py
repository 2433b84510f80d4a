"""Shared helpers of the model-generator tests: check a model, run it in onnxruntime."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest

ort = pytest.importorskip("onnxruntime")


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Checks ``model`` (full shape inference) and runs it on CPU."""
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


@pytest.fixture
def ort_run() -> Callable[[onnx.ModelProto, dict[str, np.ndarray]], list[np.ndarray]]:
    """``ort_run(model, feeds) -> outputs`` after ``onnx.checker`` with full_check."""
    return _run

"""``python -m dist_rt.run MODEL --inputs x.npz --save-outputs y.npz`` on real exports.

The fixtures are tiny GPT-2-, BERT-, Llama-, ResNet- and ViT-style blocks exported by
PyTorch's dynamo exporter (``tests/fixtures/make_fixtures.py``), saved with their inputs and
PyTorch's outputs. The CLI's outputs must match onnxruntime and PyTorch to 1e-4 in fp32, with
fresh random inputs too (not only the saved ones).
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from dist_rt.run import main

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
NAMES = ["gpt2_block", "bert_block", "llama_block", "resnet_tiny", "vit_tiny"]


def _fresh(name: str, saved: dict[str, np.ndarray], rng: np.random.Generator):
    """New inputs of the saved shapes: ids below the smallest vocab, masks of 0/1, images."""
    fresh = {}
    for key, value in saved.items():
        if key == "attention_mask":
            mask = rng.integers(0, 2, value.shape).astype(value.dtype)
            mask[:, 0] = 1
            fresh[key] = mask
        elif value.dtype.kind == "i":
            fresh[key] = rng.integers(0, int(value.max()) + 1, value.shape).astype(value.dtype)
        else:
            fresh[key] = rng.standard_normal(value.shape).astype(value.dtype)
    return fresh


@pytest.mark.parametrize("name", NAMES)
def test_cli_matches_onnxruntime_and_torch(name, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    path = os.path.join(FIXTURES, f"{name}.onnx")
    data = np.load(os.path.join(FIXTURES, f"{name}.npz"))
    saved = {k[len("in_"):]: data[k] for k in data.files if k.startswith("in_")}
    torch_out = [data[f"out_{i}"] for i in range(len(data.files) - len(saved))]
    out_names = [o.name for o in onnx.load(path, load_external_data=False).graph.output]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for feeds, reference in ((saved, torch_out),
                             (_fresh(name, saved, np.random.default_rng(7)), None)):
        np.savez(tmp_path / "x.npz", **feeds)
        rc = main([path, "--inputs", str(tmp_path / "x.npz"), "--save-outputs",
                   str(tmp_path / "y.npz"), "--iterations", "1", "--warmup", "0"])
        assert rc == 0, capsys.readouterr().err
        got = np.load(tmp_path / "y.npz")
        expected = session.run(None, feeds)
        for out, want in zip(out_names, expected, strict=True):
            np.testing.assert_allclose(got[out], want, rtol=1e-4, atol=1e-4)
        if reference is not None:
            for out, want in zip(out_names, reference, strict=True):
                np.testing.assert_allclose(got[out], want, rtol=1e-4, atol=1e-4)

"""runtime/weight_layout.py: which constants a GPU backend keeps transposed (no GPU needed).

Also the backend interface around it: the CPU backend transposes nothing and uploads every
constant as it is (``Backend.constants_to_device``'s default), with a name filter.
"""

from __future__ import annotations

import numpy as np
import pytest

import dist_rt
from dist_rt import Builder, BuilderConfig, dtypes
from dist_rt.network import Network
from dist_rt.runtime.backends import get_backend
from dist_rt.runtime.weight_layout import linear_weights


def _net(weight: np.ndarray, readers: tuple[str, ...] = ("matmul",), output: bool = False):
    """x (2, K) read by the given layers of ``weight``: matmul (as B), matmul_a (as A),
    matmul_cast, gather, or a second matmul."""
    net = Network("w")
    k = weight.shape[0] if weight.ndim == 2 else 8
    x = net.add_input("x", weight.dtype, (2, k))
    w = net.add_constant("w", weight)
    idx = net.add_input("idx", np.int64, (1,))
    for i, kind in enumerate(readers):
        if kind in ("matmul", "matmul2"):
            y = net.add_layer("MatMul", [x, w], name=f"mm{i}", infer=False).outputs[0]
        elif kind == "matmul_a":
            y = net.add_layer("MatMul", [w, w], name=f"mm{i}", infer=False).outputs[0]
        elif kind == "matmul_cast":
            y = net.add_layer("MatMulCast", [x, w], {"to": 1}, name=f"mmc{i}",
                              domain="dist_rt", infer=False).outputs[0]
        else:
            y = net.add_layer("Gather", [w, idx], {"axis": 0}, name=f"g{i}",
                              infer=False).outputs[0]
        net.mark_output(y)
    if output:
        net.mark_output(w)
    return net


W16 = np.ones((64, 24), np.float16)


@pytest.mark.parametrize("readers", [("matmul",), ("matmul_cast",), ("matmul", "matmul2")])
@pytest.mark.parametrize("dtype", [np.dtype(np.float16), dtypes.bfloat16])
def test_linear_readers_qualify(readers, dtype):
    assert linear_weights(_net(W16.astype(dtype), readers)) == {"w"}


@pytest.mark.parametrize("weight, readers, output, why", [
    (W16.astype(np.float32), ("matmul",), False, "float32: the GEMV reads 16-bit values"),
    (np.ones((60, 24), np.float16), ("matmul",), False, "K % 8 != 0"),
    (np.ones((8, 8, 3), np.float16), ("matmul",), False, "3-D"),
    (W16, ("matmul", "gather"), False, "also read by a Gather"),
    (np.ones((64, 64), np.float16), ("matmul_a",), False, "read as A"),
    (W16, ("matmul",), True, "a network output"),
])
def test_other_constants_keep_their_layout(weight, readers, output, why):
    assert linear_weights(_net(weight, readers, output)) == set(), why


def test_llama_projections_but_not_the_embedding():
    from dist_rt.models.llama import LlamaConfig, make_llama

    cfg = LlamaConfig(hidden=64, layers=2, heads=4, kv_heads=2, mlp=128, vocab=101)
    engine = Builder(BuilderConfig(precision="fp16")).build(dist_rt.parse_onnx(make_llama(cfg)))
    names = linear_weights(engine.network)
    matmul_b = {lay.inputs[1].name for lay in engine.network.layers
                if lay.op_type in ("MatMul", "MatMulCast") and lay.inputs[1].is_constant}
    assert names and names == matmul_b
    assert "model.embed_tokens.weight" not in names


def test_cpu_backend_uploads_every_constant_as_is():
    net = _net(W16, ("matmul",))
    cpu = get_backend("cpu")
    assert cpu.transposed_constants(net) == set()
    everything = cpu.constants_to_device(net)
    assert set(everything) == {t.name for t in net.constants}
    assert everything["w"].flags.c_contiguous
    np.testing.assert_array_equal(everything["w"], W16)
    assert set(cpu.constants_to_device(net, ["w"])) == {"w"}

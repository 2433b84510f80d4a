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
from dist_rt.runtime.weight_layout import linear_weights, prefetch_schedule


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


# -- prefetch_schedule ---------------------------------------------------------------------

def _llama_network(layers: int = 2):
    from dist_rt.models.llama import LlamaConfig, make_llama
    model = make_llama(LlamaConfig(layers=layers, hidden=64, heads=4, kv_heads=2, mlp=128,
                                   vocab=96, dtype="float16"))
    return Builder(BuilderConfig(device="cpu", precision="fp16")).build(
        dist_rt.parse_onnx(model.SerializeToString())).network


def test_prefetch_schedule_follows_the_gemvs_and_wraps():
    net = _llama_network(layers=3)
    linear = linear_weights(net)
    gemvs = [(layer.name, layer.inputs[1].name) for layer in net.layers
             if layer.op_type == "MatMul" and layer.inputs[1].name in linear]
    # q/k/v, o, gate/up, down a layer (merged by fuse_parallel_mm), then lm_head
    assert len(gemvs) == 4 * 3 + 1
    schedule = prefetch_schedule(net)
    assert list(schedule) == [name for name, _ in gemvs]
    for (name, _), (_, nxt) in zip(gemvs, gemvs[1:] + gemvs[:1], strict=True):
        assert schedule[name] == nxt
    assert "lm_head" in gemvs[-1][1] and schedule[gemvs[-1][0]] == gemvs[0][1]
    assert "o_proj" in schedule[gemvs[0][0]] and "down_proj" in schedule[gemvs[2][0]]


def test_prefetch_schedule_skips_a_weight_read_again_next():
    w = np.ones((8, 8), np.float16)
    one = _net(w)
    assert prefetch_schedule(one) == {}  # a single GEMV: nothing else to warm
    two = _net(w, ("matmul", "matmul2"))  # both read the same weight: no self-prefetch
    assert prefetch_schedule(two) == {}


def test_prefetch_schedule_only_names_transposed_weights():
    net = Network("two")
    x = net.add_input("x", np.float16, (2, 8))
    a = net.add_constant("a", np.ones((8, 8), np.float16))
    b = net.add_constant("b", np.ones((8, 8), np.float32))  # float32: stays (K, N)
    c = net.add_constant("c", np.ones((8, 8), np.float16))
    h = net.add_layer("MatMul", [x, a], name="mm_a", infer=False).outputs[0]
    xf = net.add_input("xf", np.float32, (2, 8))
    net.mark_output(net.add_layer("MatMul", [xf, b], name="mm_b", infer=False).outputs[0])
    net.mark_output(net.add_layer("MatMul", [h, c], name="mm_c", infer=False).outputs[0])
    assert linear_weights(net) == {"a", "c"}
    assert prefetch_schedule(net) == {"mm_a": "c", "mm_c": "a"}
    assert prefetch_schedule(net, linear={"a"}) == {}

"""dist_rt::RotaryHalfPair: each output equals RotaryHalf of its operand; shape errors.

The CUDA kernel is in tests/runtime/test_cuda_rope_pair.py; the pass that creates the op in
tests/builder/test_fuse_rope_pair.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt import dtypes
from dist_rt.errors import ShapeError
from dist_rt.network import Network
from dist_rt.ops import RunContext, get_op


def _reference(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """``x * cos + rotate_half(x) * sin`` in float64."""
    xf = x.astype(np.float64)
    half = x.shape[-1] // 2
    rot = np.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    return xf * cos.astype(np.float64) + rot * sin.astype(np.float64)


def _net(q_shape, k_shape, cos_shape, sin_shape=None, dtype=np.float32) -> Network:
    net = Network("rope_pair")
    q = net.add_input("q", dtype, q_shape)
    k = net.add_input("k", dtype, k_shape)
    cos = net.add_input("cos", dtype, cos_shape)
    sin = net.add_input("sin", dtype, sin_shape or cos_shape)
    net.opsets["dist_rt"] = 1
    net.add_layer("RotaryHalfPair", [q, k, cos, sin], domain="dist_rt", name="pair",
                  outputs=["q_rot", "k_rot"], infer=False)
    return net


#: (batch, q heads, k heads, seq, head dim): GQA head counts, uneven sizes, one token.
SHAPES = [(2, 8, 2, 7, 6), (1, 4, 4, 1, 64), (3, 6, 3, 5, 10), (1, 32, 8, 1, 128)]


class TestRun:
    @pytest.mark.parametrize("dt", [np.float32, np.float16, "bf16"])
    @pytest.mark.parametrize("b, hq, hk, s, d", SHAPES)
    def test_matches_reference(self, dt, b, hq, hk, s, d):
        dtype = dtypes.bfloat16 if dt == "bf16" else np.dtype(dt)
        rng = np.random.default_rng(b * 1000 + hq * 100 + s * 10 + d)
        q = rng.standard_normal((b, hq, s, d)).astype(dtype)
        k = rng.standard_normal((b, hk, s, d)).astype(dtype)
        cos, sin = (rng.standard_normal((1, 1, s, d)).astype(dtype) for _ in range(2))
        op = get_op("RotaryHalfPair", "dist_rt")
        layer = _net(q.shape, k.shape, cos.shape, dtype=dtype).layers[0]
        q_rot, k_rot = op.run(layer, [q, k, cos, sin], RunContext(xp=np))
        # 16-bit operands compute in float32 and round once: half an ulp of the output.
        tol = {np.float32: 1e-5, np.float16: 2e-3}.get(dt, 2e-2)
        for got, x in ((q_rot, q), (k_rot, k)):
            assert got.dtype == dtype and got.shape == x.shape
            np.testing.assert_allclose(got.astype(np.float64), _reference(x, cos, sin),
                                       rtol=tol, atol=tol)

    def test_equals_two_rotary_half_exactly(self):
        rng = np.random.default_rng(7)
        q = rng.standard_normal((2, 6, 7, 6)).astype(np.float16)
        k = rng.standard_normal((2, 2, 7, 6)).astype(np.float16)
        cos, sin = (rng.standard_normal((7, 6)).astype(np.float16) for _ in range(2))
        rt = RunContext(xp=np)
        layer = _net(q.shape, k.shape, cos.shape).layers[0]
        pair = get_op("RotaryHalfPair", "dist_rt").run(layer, [q, k, cos, sin], rt)
        single = get_op("RotaryHalf", "dist_rt")
        want = [single.run(layer, [x, cos, sin], rt)[0] for x in (q, k)]
        for got, ref in zip(pair, want, strict=True):
            np.testing.assert_array_equal(got, ref)


class TestInfer:
    def test_outputs_follow_each_operand(self):
        net = _net(("batch", 8, "seq", 6), ("batch", 2, "seq", 6), (1, 1, "seq", 6),
                   dtype=np.float16)
        net.infer_shapes()
        q_rot, k_rot = net.layers[0].outputs
        assert (q_rot.dtype, q_rot.shape) == (np.float16, ("batch", 8, "seq", 6))
        assert (k_rot.dtype, k_rot.shape) == (np.float16, ("batch", 2, "seq", 6))

    @pytest.mark.parametrize("q_shape, k_shape, which", [
        ((1, 4, 7, 5), (1, 2, 7, 6), "input 0 \\(q\\).*last dim 5 must be even"),
        ((1, 4, 7, 6), (1, 2, 7, 7), "input 1 \\(k\\).*last dim 7 must be even"),
    ])
    def test_odd_head_dim(self, q_shape, k_shape, which):
        net = _net(q_shape, k_shape, (1, 1, 7, 1))  # tables that broadcast to either D
        with pytest.raises(ShapeError, match=f"layer 'pair' \\(RotaryHalfPair\\): {which}"):
            net.infer_shapes()

    def test_cos_and_sin_shapes_differ(self):
        net = _net((1, 4, 7, 6), (1, 2, 7, 6), (1, 1, 7, 6), (1, 1, 7, 8))
        with pytest.raises(ShapeError, match="layer 'pair' \\(RotaryHalfPair\\): input 0 \\(q\\) "
                                             "has shape \\(1, 4, 7, 6\\), which does not "
                                             "broadcast with cos \\(1, 1, 7, 6\\) and sin "
                                             "\\(1, 1, 7, 8\\)"):
            net.infer_shapes()

    def test_k_does_not_broadcast(self):
        net = _net((1, 4, 7, 6), (1, 2, 5, 6), (1, 1, 7, 6))
        with pytest.raises(ShapeError, match="input 1 \\(k\\) has shape \\(1, 2, 5, 6\\)"):
            net.infer_shapes()

    def test_three_inputs(self):
        net = Network("rope_pair")
        x = net.add_input("x", np.float32, (1, 2, 3, 4))
        net.opsets["dist_rt"] = 1
        with pytest.raises(ShapeError, match="layer 'pair' \\(RotaryHalfPair\\): got 3 inputs, "
                                             "expected 4"):
            net.add_layer("RotaryHalfPair", [x, x, x], domain="dist_rt", name="pair",
                          outputs=["a", "b"])

"""dist_rt::MatMulSiluMul: the NumPy reference, shape inference and its errors.

Reference: float64 products of the same operands, each rounded to the input dtype (as the
unfused MatMul's output is), then ``silu(g) * u`` in float64 and one rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt import Builder, BuilderConfig
from dist_rt.errors import DistRtError, ShapeError
from dist_rt.network import Network

ULP = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float16): 2.0**-10}


def _network(a_shape, b, dtype) -> Network:
    net = Network("glu")
    x = net.add_input("a", dtype, a_shape)
    w = net.add_constant("b", b)
    y = net.add_layer("MatMulSiluMul", [x, w], {}, name="glu", domain="dist_rt")
    net.mark_output(y.outputs[0])
    return net


def _reference(a, b):
    half = b.shape[1] // 2
    h = (a.astype(np.float64) @ b.astype(np.float64)).astype(a.dtype).astype(np.float64)
    g, u = h[..., :half], h[..., half:]
    return g / (1 + np.exp(-g)) * u


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("a_shape, k, half", [((1, 1, 64), 64, 96), ((2, 5, 24), 24, 7),
                                              ((3, 16), 16, 1), ((0, 8), 8, 4)],
                         ids=["decode", "odd_half", "2d", "no_rows"])
def test_matches_reference(dtype, a_shape, k, half):
    rng = np.random.default_rng(sum(a_shape) + k + half)
    a = rng.standard_normal(a_shape).astype(dtype)
    b = (rng.standard_normal((k, 2 * half)) / np.sqrt(k)).astype(dtype)
    engine = Builder(BuilderConfig(optimization_level=0)).build(_network(a_shape, b, dtype))
    with engine.create_execution_context() as ctx:
        y = ctx.execute({"a": a})[engine.network.outputs[0].name]
    assert y.shape == (*a_shape[:-1], half) and y.dtype == np.dtype(dtype)
    want = _reference(a, b)
    k_err = 2 * k * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    tol = ULP[np.dtype(dtype)] * (1 + np.abs(want)) + 4 * k_err.max(initial=0)
    assert np.all(np.abs(y.astype(np.float64) - want) <= tol)


@pytest.mark.parametrize("a_shape, b_shape, dtype_b, words", [
    ((2, 8), (8, 7), np.float32, "7 columns, expected an even number"),
    ((2, 8), (2, 8, 6), np.float32, "expected (K, 2I)"),
    ((2, 8), (9, 6), np.float32, "inner dims differ"),
    ((2, 8), (8, 6), np.float16, "dtype float16, expected float32"),
])
def test_bad_shapes_name_the_input(a_shape, b_shape, dtype_b, words):
    b = np.ones(b_shape, dtype_b)
    with pytest.raises(ShapeError) as err:
        Builder(BuilderConfig(optimization_level=0)).build(
            _network(a_shape, b, np.float32))
    assert "'glu' (MatMulSiluMul)" in str(err.value) and words in str(err.value)
    assert isinstance(err.value, DistRtError)


def test_scalar_a_is_refused():
    with pytest.raises(ShapeError, match="input 0 \\(A\\) is a scalar"):
        Builder(BuilderConfig(optimization_level=0)).build(
            _network((), np.ones((8, 6), np.float32), np.float32))

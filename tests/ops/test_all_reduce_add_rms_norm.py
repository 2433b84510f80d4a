"""dist_rt::AllReduceAddRMSNorm: shape inference, bad input, and the no-communicator case.

Its multi-rank numerics are in tests/builder/test_fuse_allreduce_norm.py (threads) and
tests/collectives/nvlink_worker.py (the fused NVLink kernel on GPUs).
"""

from __future__ import annotations

import numpy as np
import pytest

from dist_rt.errors import CommunicatorError, ShapeError
from dist_rt.network import Network
from dist_rt.ops import RunContext


def _net(x_shape=(2, 8), r_shape=(2, 8), w_shape=(8,), nb_ranks=2) -> Network:
    net = Network("fused")
    x = net.add_input("x", np.float16, x_shape)
    r = net.add_input("r", np.float16, r_shape)
    w = net.add_constant("w", np.ones(w_shape, np.float16))
    net.opsets["dist_rt"] = 1
    layer = net.add_layer("AllReduceAddRMSNorm", [x, r, w],
                          {"collective_operation": "all_reduce", "reduce_op": "sum",
                           "epsilon": 1e-5}, domain="dist_rt", name="fused",
                          outputs=["s", "y"], infer=False)
    layer.nb_ranks = nb_ranks
    return net


def test_infers_two_outputs_of_the_input_shape():
    net = _net()
    net.infer_shapes()
    layer = net.layers[0]
    assert [(t.dtype, t.shape) for t in layer.outputs] == [(np.float16, (2, 8))] * 2


def test_scale_must_match_the_last_axis():
    net = _net(w_shape=(4,))
    with pytest.raises(ShapeError, match="layer 'fused'.*scale"):
        net.infer_shapes()


def test_needs_a_communicator_for_two_ranks():
    net = _net()
    layer = net.layers[0]
    x = np.ones((2, 8), np.float16)
    with pytest.raises(CommunicatorError, match="layer 'fused' spans 2 ranks"):
        layer.op.run(layer, [x, x, np.ones(8, np.float16)], RunContext())


def test_one_rank_is_add_rmsnorm():
    net = _net(nb_ranks=1)
    layer = net.layers[0]
    rng = np.random.default_rng(0)
    x, r = (rng.standard_normal((2, 8)).astype(np.float16) for _ in range(2))
    s, y = layer.op.run(layer, [x, r, np.ones(8, np.float16)], RunContext())
    want_s = x + r
    sf = want_s.astype(np.float32)
    want_y = sf / np.sqrt((sf * sf).mean(-1, keepdims=True) + 1e-5)
    np.testing.assert_array_equal(s, want_s)
    np.testing.assert_allclose(y.astype(np.float32), want_y, rtol=2e-3, atol=2e-3)

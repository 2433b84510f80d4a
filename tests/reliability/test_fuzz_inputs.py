"""Fuzz: wrong feed dicts (names, dtypes, ranks, dims, non-arrays) raise InputError."""

from __future__ import annotations

import pytest
from _fuzz_common import FEED_KINDS, base_bytes, check_feeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dist_rt import Builder, BuilderConfig, parse_onnx


@pytest.fixture(scope="module", params=[0, 3], ids=["mlp", "llama"])
def engine(request):
    return Builder(BuilderConfig(device="cpu")).build(parse_onnx(base_bytes(request.param)))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(FEED_KINDS), seed=st.integers(0, 2**32 - 1))
def test_bad_feeds(engine, kind, seed):
    check_feeds(engine, kind, seed)

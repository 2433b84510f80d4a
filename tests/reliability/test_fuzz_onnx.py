"""Fuzz: mutated ONNX models end in success matching onnxruntime, or in a DistRtError."""

from __future__ import annotations

import warnings

from _fuzz_common import BASES, ONNX_KINDS, check_onnx, mutate_onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MUTATIONS = st.lists(st.tuples(st.sampled_from(ONNX_KINDS), st.integers(0, 2**32 - 1)),
                     min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(base=st.integers(0, len(BASES) - 1), mutations=MUTATIONS)
def test_mutated_models(base, mutations):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inf/nan weights make NumPy warn, that is fine
        check_onnx(mutate_onnx(base, mutations), (base, mutations))


def test_unmutated_bases_run_and_match_onnxruntime():
    for i in range(len(BASES)):
        assert check_onnx(mutate_onnx(i, []), i) == "ok"

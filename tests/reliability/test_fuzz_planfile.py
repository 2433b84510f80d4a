"""Fuzz: damaged plan files raise PlanFileError/VersionMismatchError (or another DistRtError
once the header is forged past the checksum), never another exception, never a crash."""

from __future__ import annotations

import pytest
from _fuzz_common import PLAN_KINDS, build_plan, check_plan, mutate_plan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def plan_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "m.plan"
    build_plan(str(path))
    return path.read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutations=st.lists(st.tuples(st.sampled_from(PLAN_KINDS), st.integers(0, 2**32 - 1)),
                          min_size=1, max_size=2))
def test_damaged_plan_files(plan_bytes, tmp_path_factory, mutations):
    data = plan_bytes
    for kind, seed in mutations:
        data = mutate_plan(data, kind, seed) if len(data) >= 64 else data
    path = tmp_path_factory.mktemp("d") / "x.plan"
    path.write_bytes(data)
    check_plan(str(path), mutations)


@pytest.mark.parametrize("cut", [0, 1, 63, 64, 65, 200, -1])
def test_truncation_is_a_plan_file_error(plan_bytes, tmp_path, cut):
    path = tmp_path / "t.plan"
    path.write_bytes(plan_bytes[:cut])
    assert check_plan(str(path)) == "error:PlanFileError"

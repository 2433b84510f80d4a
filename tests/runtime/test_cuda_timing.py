"""Device-clock tactic timing (runtime/cuda/timing.py): graph-captured calls, CUDA events."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def timing(cp):
    from dist_rt.runtime.cuda import timing

    return timing


def test_measures_device_work_not_host_dispatch(cp, timing):
    """Two 64 MiB copies a call take about twice one copy's device time, even though the
    host enqueues either in microseconds (host timing would see mostly Python)."""
    src = cp.ones(32 << 20, dtype=cp.float16)
    dst = cp.empty_like(src)

    def one():
        dst[...] = src

    def two():
        dst[...] = src
        src[...] = dst

    t1 = float(np.median(timing.time_calls(one, 8, 5)))
    t2 = float(np.median(timing.time_calls(two, 8, 5)))
    assert t1 > 0.0 and 1.5 < t2 / t1 < 2.6
    np.testing.assert_array_equal(cp.asnumpy(dst[:4]), np.ones(4, np.float16))


def test_replays_run_the_calls(cp, timing):
    x = cp.zeros(4, dtype=cp.float32)

    def add():
        x[...] += 1  # in place: every replay adds again

    samples = timing.time_calls(add, 3, 4)
    assert len(samples) == 4 and all(s > 0 for s in samples)
    # warm-up call 1, replays: warm-up + 4 samples, 3 calls each (the capture runs nothing)
    assert cp.asnumpy(x).tolist() == [16.0] * 4


def test_uncapturable_calls_give_none_and_leave_no_capture(cp, timing):
    stream_sync = lambda: cp.cuda.get_current_stream().synchronize()  # noqa: E731

    def syncing():
        cp.arange(8).sum()
        stream_sync()  # not allowed while capturing

    def raising():
        raise ValueError("declined")

    assert timing.time_calls(syncing, 4, 2) is None
    with pytest.raises(ValueError):
        timing.time_calls(raising, 4, 2)  # the uncaptured warm-up call raises as it is
    assert float(cp.arange(5).sum()) == 10.0  # the device is usable afterwards

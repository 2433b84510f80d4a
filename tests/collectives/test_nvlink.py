"""The NVLink one-shot all-reduce: its pure logic on CPU, the kernel on 2 and up to 4 GPUs.

CPU tests import ``collectives.nvlink`` only (it loads CuPy lazily). The multi-GPU tests
spawn ``tests/collectives/nvlink_worker.py`` with ``python -m launch`` and are skipped
without two GPUs (tests/conftest.py); see the worker for what each mode checks. The
latency table is printed (run pytest with ``-s`` to see it), never asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from collectives.nvlink import (
    DEFAULT_MAX_BYTES,
    LIMIT_MAX_BYTES,
    MAX_BLOCKS,
    THREADS,
    Plan,
    decide,
    launch_shape,
    layout,
    parse_bytes,
    settings_from_env,
)
from dist_rt.errors import LaunchError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "collectives", "nvlink_worker.py")


def _info(host="node0", bus="0000:18:00.0", sms=132, enabled=True,
          max_bytes=DEFAULT_MAX_BYTES, error="", unusable=""):
    return {"host": host, "bus": bus, "sms": sms, "enabled": enabled, "max_bytes": max_bytes,
            "error": error, "unusable": unusable}


def _world(n, **over):
    """``n`` ranks on one host with distinct GPUs; ``over`` maps rank -> field overrides."""
    return [_info(**{"bus": f"0000:{0x18 + r:02x}:00.0", **over.get(f"r{r}", {})})
            for r in range(n)]


class TestSettings:
    def test_defaults(self):
        assert settings_from_env({}) == (True, DEFAULT_MAX_BYTES)
        assert DEFAULT_MAX_BYTES == 512 << 10

    @pytest.mark.parametrize("raw", ["0", "off", "false", "No"])
    def test_disable(self, raw):
        assert settings_from_env({"DIST_RT_NVLINK_ALLREDUCE": raw})[0] is False

    @pytest.mark.parametrize("raw", ["", "1", "on", "TRUE"])
    def test_enable(self, raw):
        assert settings_from_env({"DIST_RT_NVLINK_ALLREDUCE": raw})[0] is True

    def test_bad_switch(self):
        with pytest.raises(LaunchError, match="DIST_RT_NVLINK_ALLREDUCE='maybe'"):
            settings_from_env({"DIST_RT_NVLINK_ALLREDUCE": "maybe"})

    @pytest.mark.parametrize("raw, want", [("65536", 65536), ("64K", 65536), ("1M", 1 << 20),
                                           ("256kb", 256 << 10), (" 16 ", 16)])
    def test_max_bytes(self, raw, want):
        env = {"DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES": raw}
        assert settings_from_env(env) == (True, want)

    @pytest.mark.parametrize("raw", ["lots", "0", "-5", "8", "1G", "inf", "nan"])
    def test_bad_max_bytes(self, raw):
        with pytest.raises(LaunchError, match="DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES"):
            settings_from_env({"DIST_RT_NVLINK_ALLREDUCE_MAX_BYTES": raw})

    def test_parse_bytes(self):
        assert parse_bytes("512K") == 512 << 10 and parse_bytes("2MB") == 2 << 20
        assert parse_bytes("1.5K") == 1536
        with pytest.raises(ValueError):
            parse_bytes("K")


class TestDecide:
    def test_active(self):
        plan, reason = decide(_world(4))
        assert plan == Plan(DEFAULT_MAX_BYTES, MAX_BLOCKS) and reason == ""

    def test_every_rank_takes_the_smallest_settings(self):
        plan, _ = decide(_world(3, r1={"max_bytes": 65536}, r2={"sms": 20}))
        assert plan == Plan(65536, 20)

    @pytest.mark.parametrize("over, why", [
        ({"r2": {"enabled": False}}, r"DIST_RT_NVLINK_ALLREDUCE=0 on rank\(s\) \[2\]"),
        ({"r1": {"host": "node1"}}, "span 2 hosts"),
        ({"r3": {"bus": "0000:18:00.0"}}, "ranks 0 and 3 share GPU 0000:18:00.0"),
        ({"r1": {"unusable": "GPU 1 query failed"}}, "rank 1: GPU 1 query failed"),
    ])
    def test_falls_back(self, over, why):
        plan, reason = decide(_world(4, **over))
        assert plan is None and re.search(why, reason), reason

    @pytest.mark.parametrize("n", [1, 9])
    def test_world_size(self, n):
        plan, reason = decide(_world(n))
        assert plan is None and "outside 2..8" in reason

    def test_malformed_environment_raises_on_every_rank(self):
        with pytest.raises(LaunchError, match=r"rank 1/2: DIST_RT_NVLINK"):
            decide(_world(2, r1={"error": "DIST_RT_NVLINK_ALLREDUCE='x', expected 0 or 1"}))


class TestLayout:
    @pytest.mark.parametrize("max_bytes, world, blocks", [(DEFAULT_MAX_BYTES, 4, 32),
                                                          (1000, 8, 20), (16, 2, 1)])
    def test_regions_do_not_overlap(self, max_bytes, world, blocks):
        lay = layout(Plan(max_bytes, blocks), world)
        assert lay.slot_bytes >= max_bytes and lay.slot_bytes % 256 == 0
        assert lay.flags_off == 2 * lay.slot_bytes
        assert lay.counters_off >= lay.flags_off + world * blocks * 8
        assert lay.total >= lay.counters_off + blocks * 8
        assert lay.flags_off % 256 == 0 and lay.counters_off % 256 == 0

    @pytest.mark.parametrize("count, itemsize, want", [
        (2, 4, (1, 32)),              # 8 B: one vector, one warp
        (4096, 2, (1, 512)),          # 8 KiB of bf16: 512 vectors
        (8192, 4, (4, 512)),          # 32 KiB
        (131072, 2, (32, 512)),       # 256 KiB of bf16
        (131072, 4, (32, 512)),       # 512 KiB of float32: 2 vectors per thread
        (7, 2, (1, 32)),
    ])
    def test_launch_shape(self, count, itemsize, want):
        assert launch_shape(count, itemsize, MAX_BLOCKS) == want

    @pytest.mark.parametrize("count", [1, 7, 1000, 4097, 65539, 262144])
    def test_launch_shape_bounds(self, count):
        for blocks_max in (1, 5, MAX_BLOCKS):
            blocks, threads = launch_shape(count, 2, blocks_max)
            assert 1 <= blocks <= blocks_max and 32 <= threads <= THREADS
            assert threads % 32 == 0

    def test_limits(self):
        assert LIMIT_MAX_BYTES >= DEFAULT_MAX_BYTES


def test_module_does_not_import_cupy():
    code = "import sys, collectives.nvlink; print('cupy' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout.strip() == "False", proc.stderr


# -- multi-GPU -----------------------------------------------------------------------------------


def _ngpu() -> int:
    import cupy  # noqa: PLC0415 - only on GPU machines

    return min(4, cupy.cuda.runtime.getDeviceCount())


def _spawn(n, args, timeout, env=None):
    full = dict(os.environ, PYTHONPATH=ROOT, NCCL_NVLS_ENABLE="0", **(env or {}))
    try:
        return subprocess.run([sys.executable, "-m", "launch", "-n", str(n), sys.executable,
                               WORKER, *args], cwd=ROOT, env=full, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} did not finish in {timeout} s (hang?)\nstdout: {exc.stdout}\n"
                    f"stderr: {exc.stderr}")


def _ranks(which: str) -> int:
    n = 2 if which == "two" else _ngpu()
    if which == "all" and n == 2:
        pytest.skip("only 2 GPUs: covered by the 2-rank case")
    return n


def _assert_summaries(proc, n):
    found = re.findall(r"SUMMARY rank (\d+)/\d+ cases=(\d+) failures=(\d+)", proc.stdout)
    assert len(found) == n, proc.stdout + proc.stderr
    assert all(int(f) == 0 and int(c) > 200 for _, c, f in found), proc.stdout
    assert proc.returncode == 0, proc.stderr


@pytest.mark.multigpu
@pytest.mark.parametrize("which", ["two", "all"])
def test_nvlink_all_reduce(which):
    n = _ranks(which)
    proc = _spawn(n, ["check"], timeout=400)
    paths = re.findall(r"PATH rank \d+/\d+ nvlink=(\d)", proc.stdout)
    assert paths == ["1"] * n, proc.stdout + proc.stderr
    _assert_summaries(proc, n)


@pytest.mark.multigpu
def test_env_disables():
    proc = _spawn(2, ["check"], timeout=400, env={"DIST_RT_NVLINK_ALLREDUCE": "0"})
    assert re.findall(r"nvlink=(\d)", proc.stdout) == ["0", "0"], proc.stdout + proc.stderr
    assert "disabled by DIST_RT_NVLINK_ALLREDUCE=0" in proc.stdout
    _assert_summaries(proc, 2)


@pytest.mark.multigpu
def test_stalled_peer_in_graph_traps():
    """Graph replays are not watched: the kernel's own timeout must end the job."""
    t0 = time.monotonic()
    proc = _spawn(2, ["stall_graph"], timeout=90, env={"DIST_RT_COLLECTIVE_TIMEOUT": "2"})
    if "SKIP nvlink inactive" in proc.stdout:
        pytest.skip(proc.stdout)
    assert "REPLAY-STALL rank 0" in proc.stdout, proc.stdout + proc.stderr
    assert "NO-TRAP" not in proc.stdout
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 80


@pytest.mark.multigpu
def test_latency_table():
    """Median us per call, nvlink vs NCCL, printed (not asserted)."""
    n, rows = _ngpu(), {}
    for label, env in (("nvlink", {}), ("nccl", {"DIST_RT_NVLINK_ALLREDUCE": "0"})):
        proc = _spawn(n, ["bench"], timeout=300, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for path, size, med, ok in re.findall(
                r"LAT path=(\w+) .*?bytes=(\d+) median_us=([\d.]+) .*correct=(\d)", proc.stdout):
            assert ok == "1", proc.stdout
            rows.setdefault(int(size), {})[label] = (path, float(med))
    print(f"\nall_reduce latency, {n} ranks, median us per call over 1000 graph-replayed calls")
    print(f"{'bytes':>8} {'nvlink run':>18} {'NCCL run':>18}")
    for size in sorted(rows):
        cells = [f"{rows[size][k][1]:8.2f} ({rows[size][k][0]})" if k in rows[size] else "-"
                 for k in ("nvlink", "nccl")]
        print(f"{size:>8} {cells[0]:>18} {cells[1]:>18}")
    assert len(rows) == 4

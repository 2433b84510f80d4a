"""examples/40_tensor_parallel/tp_report.py: rows, speed-ups and issue 10's targets (no MPI)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                                "40_tensor_parallel"))
import tp_report  # noqa: E402


def _row(impl, n, shape, ms):
    b, s = (int(v) for v in shape.split("x"))
    return {"impl": impl, "n": n, "shape": shape, "median_ms": ms, "tokens_per_s": b * s / ms}


def _rows(decode_n4=1.2, prefill_n4=5.0, torch_n4=1.0):
    return [_row("dist_rt", 1, "1x1", 4.0), _row("dist_rt", 2, "1x1", 2.4),
            _row("dist_rt", 4, "1x1", decode_n4),
            _row("dist_rt", 1, "1x2048", 16.0), _row("dist_rt", 4, "1x2048", prefill_n4),
            _row("torch_eager", 4, "1x1", 9.0), _row("torch_compile", 4, "1x1", torch_n4)]


def _targets(rows) -> dict[str, tuple]:
    tp_report.summarize(rows)
    return {t["target"]: (t["value"], t["ok"]) for t in tp_report.targets(rows)}


def test_summarize():
    rows = _rows()
    tp_report.summarize(rows)
    r = next(r for r in rows if (r["n"], r["shape"]) == (4, "1x2048"))
    assert r["speedup"] == pytest.approx(3.2) and r["efficiency"] == pytest.approx(0.8)
    assert r["latency_vs_n1"] == pytest.approx(5 / 16)
    torch = next(r for r in rows if r["impl"] == "torch_eager")
    assert torch["speedup"] is None and torch["efficiency"] is None  # no torch N=1 row


def test_targets_met_and_missed():
    got = _targets(_rows(decode_n4=1.2, prefill_n4=5.0, torch_n4=1.0))
    assert got["decode 1x1: latency N=2 / N=1 <= 0.6"] == (pytest.approx(0.6), True)
    assert got["decode 1x1: latency N=4 / N=1 <= 0.35"] == (pytest.approx(0.3), True)
    assert got["prefill 1x2048: throughput N=4 / N=1 >= 3.2"] == (pytest.approx(3.2), True)
    # dist_rt 1.2 ms against the best torch row (compile, 1.0 ms): not faster
    assert got["1x1 N=4: dist_rt / best torch TP < 1"] == (pytest.approx(1.2), False)
    missed = _targets(_rows(decode_n4=1.5, prefill_n4=6.0, torch_n4=2.0))
    assert missed["decode 1x1: latency N=4 / N=1 <= 0.35"][1] is False
    assert missed["prefill 1x2048: throughput N=4 / N=1 >= 3.2"][1] is False
    assert missed["1x1 N=4: dist_rt / best torch TP < 1"][1] is True


def test_unmeasured_targets_say_none():
    rows = [_row("dist_rt", 1, "1x1", 4.0), _row("dist_rt", 2, "1x1", 2.0)]
    got = _targets(rows)
    assert "decode 1x1: latency N=4 / N=1 <= 0.35" not in got  # N=4 never ran
    assert got["1x1 N=2: dist_rt / best torch TP < 1"] == (None, None)  # no torch rows


def test_collect_takes_the_slowest_rank():
    args = argparse.Namespace(shape_list=[(1, 1), (2, 8)])
    report = {"results": []}
    fast = [{"times_ms": [1.0, 1.1, 0.9]}, {"times_ms": [2.0, 2.0, 2.0]}]
    slow = [{"times_ms": [1.5, 1.5, 1.5]}, {"times_ms": [1.0, 1.0, 1.0]}]
    tp_report.collect(report, "dist_rt", 2, [fast, slow, [{"times_ms": [99.0]}]], args)
    by = {r["shape"]: r for r in report["results"]}
    assert by["1x1"]["median_ms"] == 1.5 and by["1x1"]["rank_medians_ms"] == [1.0, 1.5]
    assert by["2x8"]["median_ms"] == 2.0  # rank 2 is outside N = 2 and is ignored
    assert by["2x8"]["tokens_per_s"] == pytest.approx(16 / 2e-3)


def test_check_and_write_json(tmp_path):
    ref = np.array([[0.5, -3.0]], np.float32)
    ok = tp_report.check(ref + 0.01, ref, tol=2e-2)
    assert ok["ok"] and ok["tol"] == pytest.approx(0.06)
    assert not tp_report.check(ref + 0.1, ref, tol=2e-2)["ok"]
    path = tmp_path / "r.json"
    tp_report.write_json({"a": 1}, str(path))
    assert json.loads(path.read_text()) == {"a": 1} and not (tmp_path / "r.json.tmp").exists()

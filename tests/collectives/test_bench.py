"""python -m collectives.bench under mpiexec: the table, the JSON records, the checks."""

from __future__ import annotations

import argparse
import json

import pytest
from mpi_util import run_mpi

from collectives.bench import BUSBW, main, parse_size, sizes
from collectives.communicator import COLLECTIVES


def test_bench_two_ranks(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_mpi(2, ["-m", "collectives.bench", "--backend", "mpi", "--min-bytes", "8",
                       "--max-bytes", "256", "--step-factor", "4", "--iters", "3",
                       "--warmup", "1", "--dtype", "bfloat16", "--json", str(out)], timeout=120)
    assert "checks failed: 0" in proc.stdout
    data = json.loads(out.read_text())
    assert data["ranks"] == 2 and data["dtype"] == "bfloat16"
    ops = {r["op"] for r in data["records"]}
    assert ops == set(COLLECTIVES)
    for r in data["records"]:
        assert r["max_error"] == 0 and r["time_us"] > 0
        factor = BUSBW.get(r["op"], lambda n: (n - 1) / n)(2)
        assert r["busbw_GBps"] == pytest.approx(r["algbw_GBps"] * factor)
        assert r["size"] == r["count"] * 2


def test_bench_avg_three_ranks():
    proc = run_mpi(3, ["-m", "collectives.bench", "--op", "reduce_scatter", "--reduce-op", "avg",
                       "--min-bytes", "48", "--max-bytes", "48", "--iters", "2"], timeout=120)
    assert "reduce_scatter" in proc.stdout and "checks failed: 0" in proc.stdout


def test_parse_size_and_sizes():
    assert parse_size("8") == 8 and parse_size("64K") == 65536 and parse_size("1G") == 1 << 30
    assert parse_size("256MB") == 256 << 20
    with pytest.raises(argparse.ArgumentTypeError, match="not like"):
        parse_size("lots")
    assert sizes(8, 64, 2) == [8, 16, 32, 64]


def test_graph_needs_nccl(capsys):
    with pytest.raises(SystemExit):
        main(["--graph"])
    assert "--graph needs --backend nccl" in capsys.readouterr().err

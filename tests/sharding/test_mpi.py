"""Sharded runs under real mpiexec equal the unsharded reference (one launch per N).

``mpi_worker.py`` checks 37 (model, cost model) cases per launch: hand-built transformers,
the zoo (Llama GQA/RoPE incl. uneven and tied, GPT-2, BERT, ViT, ResNet, dense and capacity
MoE, the latter also with GShard's all_to_all plan) and the dynamo fixtures, plus one
export -> import round trip.
"""

import pytest

from tests.mpi_util import run_mpi

CASES = 37


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_sharded_equals_reference(n):
    proc = run_mpi(n, ["tests/sharding/mpi_worker.py"], timeout=240)
    assert "FAIL" not in proc.stdout, proc.stdout
    assert proc.stdout.count("OK ") == CASES, proc.stdout

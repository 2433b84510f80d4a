#!/usr/bin/env bash
# One-shot GPU session: NCCL tests, our bench 8 B..1 GiB, torch reference, comparison.
# Usage (repo root, 4 GPUs): OUT=/tmp/out bash examples/10_collectives_vs_torch/run_h200x4.sh
set -u
OUT=${OUT:-/tmp/collectives_out}; mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
NCCL_LIB=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0] + '/lib')" 2>/dev/null)
export LD_LIBRARY_PATH=${NCCL_LIB}:${LD_LIBRARY_PATH:-}
EX=examples/10_collectives_vs_torch
MPI="mpirun --allow-run-as-root -n 4 --bind-to none -x NCCL_NVLS_ENABLE -x PYTHONPATH \
 -x LD_LIBRARY_PATH -x PYTHONUNBUFFERED -x TORCH_SYMM_MEM_DISABLE_MULTICAST"
{
  nvidia-smi -L; nvidia-smi topo -m | head -8
  python3 -c "import cupy, torch; from cupy.cuda import nccl; print('cupy', cupy.__version__, \
'nccl(cupy)', nccl.get_version(), 'torch', torch.__version__, torch.cuda.nccl.version())"
} 2>&1 | tee "$OUT/env.log"
timeout 150 python3 -m pytest -m "gpu or multigpu" tests/collectives -v -rs 2>&1 \
  | tee "$OUT/pytest.log" | tail -25
timeout 120 $MPI python3 -m collectives.bench --backend nccl --min-bytes 8 --max-bytes 1G \
  --iters 100 --json "$OUT/ours.json" > "$OUT/bench.log" 2>&1; echo "bench rc=$?"
timeout 40 $MPI python3 -m collectives.bench --backend nccl --op all_reduce --min-bytes 8 \
  --max-bytes 8 --iters 100 --graph --json "$OUT/ours_graph.json" > "$OUT/bench_graph.log" 2>&1
echo "graph bench rc=$?"
timeout 90 $MPI -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=29533 python3 $EX/torch_bench.py \
  --iters 100 --json "$OUT/torch.json" > "$OUT/torch.log" 2>&1; echo "torch rc=$?"
grep -E "^#|268435456|  all_reduce +8 " "$OUT/bench.log" | head -30
tail -3 "$OUT/bench_graph.log"
python3 $EX/compare.py "$OUT/ours.json" "$OUT/ours_graph.json" "$OUT/torch.json" \
  | tee "$OUT/compare.md"

#!/usr/bin/env bash
# Issue 10 on one 4-GPU node: dist_rt TP vs PyTorch TP, N = 1, 2, 4, in one mpirun.
# Usage (repo root): OUT=/tmp/out bash examples/40_tensor_parallel/run_h200x4.sh [bench flags]
# TP_RANKS=2 runs it on a 2-GPU node (N = 1, 2).
set -u
OUT=${OUT:-/tmp/tp_out}; mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export MASTER_ADDR=127.0.0.1 MASTER_PORT=29541 DIST_RT_COLLECTIVE_TIMEOUT=120
# 0: small all-reduces on NCCL instead of the NVLink one-shot kernel (collectives/nvlink.py)
export DIST_RT_NVLINK_ALLREDUCE=${DIST_RT_NVLINK_ALLREDUCE:-1}
# 0: kernels launched without programmatic dependent launch (dist_rt/runtime/cuda/launch.py)
export DIST_RT_PDL=${DIST_RT_PDL:-1}
# MiB of the next weight each decode GEMV warms in L2; 0: off (dist_rt/runtime/cuda/l2_prefetch.py)
export DIST_RT_L2_PREFETCH_MIB=${DIST_RT_L2_PREFETCH_MIB:-4}
NCCL_LIB=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0] + '/lib')" 2>/dev/null)
export LD_LIBRARY_PATH=${NCCL_LIB}:${LD_LIBRARY_PATH:-}
nvidia-smi -L 2>&1 | tee "$OUT/env.log"
timeout ${TP_TIMEOUT:-590} mpirun --allow-run-as-root -n ${TP_RANKS:-4} --bind-to none -x NCCL_NVLS_ENABLE -x PYTHONPATH \
  -x LD_LIBRARY_PATH -x PYTHONUNBUFFERED -x TORCH_SYMM_MEM_DISABLE_MULTICAST \
  -x NVSHMEM_DISABLE_NVLS -x MASTER_ADDR -x MASTER_PORT -x DIST_RT_COLLECTIVE_TIMEOUT -x DIST_RT_NVLINK_ALLREDUCE \
  -x DIST_RT_PDL -x DIST_RT_L2_PREFETCH_MIB \
  python3 examples/40_tensor_parallel/bench_tp.py --json "$OUT/tp.json" --plot "$OUT/tp.png" \
  --workdir /tmp/dist_rt_tp_7b "$@" > "$OUT/tp.md" 2> "$OUT/tp.log"
echo "bench rc=$?"; tail -40 "$OUT/tp.md"; tail -5 "$OUT/tp.log"

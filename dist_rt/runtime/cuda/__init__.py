"""CUDA-only runtime pieces: fused kernels (NVRTC via CuPy) and CUDA-graph replay.

Everything under this package imports ``cupy`` and is loaded only by the CUDA backend
(``dist_rt/runtime/backends/cuda.py``), never by the CPU paths (STYLE.md rule 6).
"""

"""``Builder``: turns a (local, per-rank) Network into an Engine through a list of passes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from dist_rt.builder import verify as _verify
from dist_rt.builder.config import BuilderConfig
from dist_rt.builder.passes import (
    FUSION_PASSES,
    BuildState,
    Pass,
    cse,
    eliminate,
    fold_constants,
    fuse_add_rmsnorm,
    fuse_allreduce_norm,
    fuse_attention,
    fuse_attention_layout,
    fuse_matmul_cast,
    fuse_matmul_silu,
    fuse_parallel_matmul,
    fuse_rmsnorm,
    fuse_rope,
    fuse_rope_pair,
    fuse_silu,
    fuse_weight_only,
    memory_plan,
    precision,
    shape_simplify,
    tactics,
)
from dist_rt.errors import BuildError
from dist_rt.network import Network


class Builder:
    """Builds engines with one :class:`BuilderConfig` (TensorRT's ``IBuilder``).

    Args:
        config: What to build; defaults to ``BuilderConfig()`` (CPU, fp32, level 2).
        progress: Called with one line per pass (name, summary, seconds), e.g. ``print``
            to stderr; None for silence.
    """

    def __init__(self, config: BuilderConfig | None = None,
                 progress: Callable[[str], None] | None = None):
        self.config = config or BuilderConfig()
        self.progress = progress

    def build(self, network: Network,
              input_shapes: Mapping[str, Sequence[int]] | None = None):
        """Optimize a copy of ``network`` and package it as an Engine.

        Args:
            network: The network to build; it is not modified. Its ``metadata`` may carry
                ``rank``, ``world_size`` and ``plan_hash`` (set by the partitioner).
            input_shapes: Concrete input shapes to plan the memory arena for (else the
                first profile's max shapes, else the network's static shapes).

        Returns:
            The built :class:`dist_rt.engine.Engine`.

        Raises:
            BuildError: A pass failed, the IR became invalid (with ``verify``), or the arena
                exceeds ``memory_limit``.
            ModelError: The network itself is malformed.
        """
        from dist_rt.engine import Engine  # noqa: PLC0415 - engine imports the builder config
        from dist_rt.planfile import network_hash  # noqa: PLC0415
        from dist_rt.runtime.backends import resolve_device  # noqa: PLC0415

        cfg = self.config
        device = resolve_device(cfg.device)
        net = network.copy()
        net.validate()
        self._check_profiles(net)
        plan_hash = str(net.metadata.get("plan_hash") or network_hash(net))
        net.metadata["source_weights"] = sorted(t.name for t in net.constants)  # for refit
        state = BuildState(cfg, {k: tuple(int(d) for d in v)
                                 for k, v in (input_shapes or {}).items()})
        level = cfg.optimization_level
        started = time.perf_counter()

        def step(name: str, fn: Pass, when: bool = True) -> None:
            if not when:
                return
            t0 = time.perf_counter()
            note = fn(net, state)
            state.notes[name] = note
            if cfg.verify:
                _verify.verify(net, name)
            if self.progress:
                self.progress(f"  {name:<16} {note} ({(time.perf_counter() - t0) * 1e3:.1f} ms)")

        step("infer", lambda n, s: f"{len(n.infer_shapes())} values known")  # dtypes/shapes
        step("fuse_weight_only", fuse_weight_only.run, level >= 2)  # MatMul(DQ(int8 W)) -> 1
        step("fold_constants", fold_constants.run, level >= 1)   # known values -> constants
        step("eliminate", eliminate.run, level >= 1)             # Identity/no-op/dead layers
        step("cse", cse.run, level >= 1)                         # duplicate layers -> one
        step("shape_simplify", shape_simplify.run, level >= 1)   # Shape chains -> 0/-1 targets
        step("fuse_attention", fuse_attention.run, level >= 2)   # SDPA pattern -> Attention
        step("fuse_rmsnorm", fuse_rmsnorm.run, level >= 2)       # x*rsqrt(mean(x^2)+e)*w -> 1
        step("fuse_silu", fuse_silu.run, level >= 2)             # x*sigmoid(x)(*up) -> SiluMul
        step("fuse_rope", fuse_rope.run, level >= 2)             # x*cos+rot_half(x)*sin -> 1
        step("fuse_attn_layout", fuse_attention_layout.run, level >= 2)  # Attn+Transpose -> bshd
        step("fuse_add_rmsnorm", fuse_add_rmsnorm.run, level >= 2)  # residual Add + RMSNorm -> 1
        step("fuse_allreduce_norm", fuse_allreduce_norm.run, level >= 2)  # all-reduce + that -> 1
        step("fuse_parallel_mm", fuse_parallel_matmul.run, level >= 2)  # q/k/v, gate/up -> 1 GEMM
        step("merge_weight_only", fuse_weight_only.merge, level >= 2)  # same, int8 weights
        for fuse in FUSION_PASSES:                               # attention, bias+act... fusion
            step(getattr(fuse, "__module__", "fuse").rsplit(".", 1)[-1], fuse, level >= 2)
        step("fuse_rope_pair", fuse_rope_pair.run, level >= 2)  # q, k RoPE of one cos/sin -> 1
        step("precision", precision.run)                         # fp16/bf16 weights + casts
        step("eliminate_casts", eliminate.run, level >= 1)       # casts made no-ops by precision
        step("fuse_matmul_cast", fuse_matmul_cast.run, level >= 2)  # Cast(16-bit MatMul) -> 1
        step("fuse_matmul_silu", fuse_matmul_silu.run, level >= 2)  # gate/up + SiluMul -> 1
        step("memory_plan", memory_plan.run)                     # arena offsets, peak bytes
        step("tactics", tactics.run,                              # time kernels, keep fastest
             level >= 3 or cfg.timing_cache is not None)

        plan = state.memory_plan
        if plan and cfg.memory_limit is not None and plan["arena_bytes"] > cfg.memory_limit:
            raise BuildError(f"activation arena needs {plan['arena_bytes']} bytes, more than "
                             f"memory_limit {cfg.memory_limit}")
        if self.progress:
            self.progress(f"  built in {(time.perf_counter() - started):.2f} s")
        return Engine(net, device=device, precision=cfg.precision, plan_hash=plan_hash,
                      memory_plan=plan, tactics=state.tactics,
                      profiles=list(cfg.profiles), build_notes=dict(state.notes))

    def _check_profiles(self, net: Network) -> None:
        inputs = {t.name: t for t in net.inputs}
        for profile in self.config.profiles:
            for name, shape in profile.max.items():
                if name not in inputs:
                    raise BuildError(f"profile '{profile.name}': '{name}' is not a network "
                                     f"input; inputs are {sorted(inputs)}")
                declared = inputs[name].shape
                if declared is not None and len(declared) != len(shape):
                    raise BuildError(f"profile '{profile.name}': input '{name}' has rank "
                                     f"{len(declared)}, the profile gives rank {len(shape)}")
                for d, (want, lo, hi) in enumerate(zip(declared or (), profile.min[name],
                                                       shape, strict=False)):
                    if isinstance(want, int) and not lo <= want <= hi:
                        raise BuildError(f"profile '{profile.name}': input '{name}' dim {d} "
                                         f"is fixed at {want}, outside [{lo}, {hi}]")

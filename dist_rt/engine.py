"""``Engine``: a built, optimized network for one rank, and its plan file.

An engine is immutable once built: the optimized Network, the binding descriptions, the
memory plan and the tactics. ``save``/``load`` go through :mod:`dist_rt.planfile` (format
described there); ``create_execution_context`` makes the object that runs it.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import numpy as np

import dist_rt
from dist_rt import dtypes, planfile
from dist_rt.builder.config import PRECISIONS, Profile
from dist_rt.errors import DistRtError, PlanFileError, PlanMismatchError, VersionMismatchError
from dist_rt.network import Network, format_shape

Binding = tuple[str, np.dtype, tuple]


def _major(version: str) -> str:
    return str(version).split(".")[0]


class Engine:
    """The built plan of one rank (TensorRT's ``ICudaEngine``).

    Attributes:
        network: The optimized network.
        rank: This engine's rank; ``world_size``: number of ranks of the plan.
        plan_hash: SHA-256 shared by every rank of one sharding plan.
        device: ``"cpu"`` or ``"cuda"``; ``device_arch``: the CPU machine or GPU arch.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        memory_plan: The activation arena plan (see ``builder.passes.memory_plan``) or None.
        tactics: Layer name -> chosen kernel.
        profiles: Optimization profiles (shape bounds of dynamic inputs).
        build_notes: Pass name -> summary line of the build.
    """

    def __init__(self, network: Network, *, device: str = "cpu", precision: str = "fp32",
                 plan_hash: str | None = None, memory_plan: dict[str, Any] | None = None,
                 tactics: dict[str, str] | None = None, profiles: list[Profile] | None = None,
                 build_notes: dict[str, str] | None = None, device_arch: str | None = None):
        self.network = network
        self.device = device
        self.precision = precision
        self.rank = int(network.metadata.get("rank", 0))
        self.world_size = int(network.metadata.get("world_size", 1))
        self.plan_hash = plan_hash or planfile.network_hash(network)
        self.memory_plan = memory_plan
        self.tactics = dict(tactics or {})
        self.profiles = list(profiles or [])
        self.build_notes = dict(build_notes or {})
        self.device_arch = device_arch or _device_arch(device)

    # -- descriptions ----------------------------------------------------------------------

    @property
    def inputs(self) -> list[Binding]:
        """Input bindings: ``(name, dtype, shape)`` (shape dims may be symbolic str)."""
        return [(t.name, t.dtype, tuple(t.shape or ())) for t in self.network.inputs]

    @property
    def outputs(self) -> list[Binding]:
        """Output bindings: ``(name, dtype, shape)``."""
        return [(t.name, t.dtype, tuple(t.shape or ())) for t in self.network.outputs]

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights this rank holds."""
        return self.network.weight_bytes()

    @property
    def activation_bytes(self) -> int | None:
        """Planned activation arena in bytes (None when shapes were symbolic at build)."""
        return None if self.memory_plan is None else int(self.memory_plan["arena_bytes"])

    def summary(self) -> str:
        """A few lines for people: bindings, layers, memory."""
        arena = self.activation_bytes
        lines = [f"Engine '{self.network.name}' rank {self.rank}/{self.world_size}, "
                 f"{self.device} ({self.device_arch}), {self.precision}, "
                 f"{len(self.network.layers)} layers, plan {self.plan_hash[:12]}",
                 f"  weights {self.weight_bytes / 2**20:.2f} MiB, activations "
                 + ("n/a (symbolic shapes)" if arena is None else f"{arena / 2**20:.2f} MiB")]
        for kind, binds in (("input ", self.inputs), ("output", self.outputs)):
            lines += [f"  {kind} {n}: {dtypes.name_of(d)}{format_shape(s)}"
                      for n, d, s in binds]
        return "\n".join(lines)

    def refit(self, weights: dict[str, Any]) -> list[str]:
        """Replace weights by name (see :mod:`dist_rt.builder.refit`); returns the names.

        Weights the builder merged (q/k/v, gate/up) are written into their slice of the
        merged weight; weights it constant-folded into another constant are refused.

        Raises:
            BuildError: Unknown or constant-folded weight, shape or dtype mismatch.
        """
        from dist_rt.builder.refit import refit  # noqa: PLC0415 - refit imports the config

        return refit(self, weights)

    def create_execution_context(self):
        """A new :class:`dist_rt.runtime.ExecutionContext` for this engine."""
        from dist_rt.runtime import ExecutionContext  # noqa: PLC0415 - runtime imports engine

        return ExecutionContext(self)

    # -- plan file ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan file (format: :mod:`dist_rt.planfile`).

        Raises:
            PlanFileError: Cannot write, or an attribute cannot be stored.
        """
        desc, constants = planfile.describe_network(self.network)
        header = {"format_version": planfile.FORMAT_VERSION,
                  "dist_rt_version": dist_rt.__version__,
                  "device": self.device, "device_arch": self.device_arch,
                  "byteorder": sys.byteorder, "precision": self.precision,
                  "rank": self.rank, "world_size": self.world_size,
                  "plan_hash": self.plan_hash,
                  "bindings": {
                      "inputs": [[n, dtypes.name_of(d), list(s)] for n, d, s in self.inputs],
                      "outputs": [[n, dtypes.name_of(d), list(s)] for n, d, s in self.outputs]},
                  "tactics": self.tactics, "memory_plan": self.memory_plan,
                  "profiles": [p.to_json() for p in self.profiles],
                  "build_notes": self.build_notes,
                  "metadata": planfile._meta(self.network.metadata, "network metadata"),
                  "network": desc}
        planfile.write(path, header, constants)

    @classmethod
    def load(cls, path: str | os.PathLike, rank: int | None = None,
             world_size: int | None = None) -> Engine:
        """Read a plan file; weights stay memory-mapped.

        Args:
            path: The plan file.
            rank: When given, the engine must be this rank's.
            world_size: When given, the engine must be for this many ranks.

        Returns:
            The engine.

        Raises:
            PlanFileError: Truncated, damaged, malformed, or for another byte order.
            VersionMismatchError: Another format version or dist_rt major version.
            PlanMismatchError: ``rank``/``world_size`` differ from the file's.
        """
        header, weights = planfile.read(path)
        where = f"plan file {os.fspath(path)!r}"
        version = str(header.get("dist_rt_version"))
        if _major(version) != _major(dist_rt.__version__):
            raise VersionMismatchError(f"{where} was written by dist_rt {version}, this is "
                                       f"dist_rt {dist_rt.__version__} (major versions differ); "
                                       f"rebuild the engine")
        if header.get("format_version") != planfile.FORMAT_VERSION:
            raise VersionMismatchError(f"{where}: header format version "
                                       f"{header.get('format_version')!r}, expected "
                                       f"{planfile.FORMAT_VERSION}")
        if header.get("byteorder") != sys.byteorder:
            raise PlanFileError(f"{where} was written on a {header.get('byteorder')}-endian "
                                f"machine, this one is {sys.byteorder}-endian")
        device, precision = header.get("device"), header.get("precision")
        if device not in ("cpu", "cuda") or precision not in PRECISIONS:
            raise PlanFileError(f"{where}: device {device!r} / precision {precision!r} are not "
                                f"valid (expected cpu|cuda and one of {PRECISIONS})")
        file_rank, file_world = header.get("rank"), header.get("world_size")
        if (not isinstance(file_rank, int) or not isinstance(file_world, int)
                or not 0 <= file_rank < file_world):
            raise PlanFileError(f"{where}: rank {file_rank!r} / world size {file_world!r} are "
                                f"not valid")
        if world_size is not None and world_size != file_world:
            raise PlanMismatchError(f"{where} is for a world of {file_world} ranks, expected "
                                    f"{world_size}")
        if rank is not None and rank != file_rank:
            raise PlanMismatchError(f"{where} is the engine of rank {file_rank}, expected rank "
                                    f"{rank}")
        network = planfile.network_from_header(
            planfile._expect(header.get("network"), dict, f"{where} network"), weights)
        try:
            network.metadata = {k: planfile.decode_value(v, "network metadata")
                                for k, v in dict(header.get("metadata") or {}).items()}
            network.metadata.update(rank=file_rank, world_size=file_world)
            profiles = [Profile.from_json(p) for p in header.get("profiles") or []]
            for key in ("tactics", "build_notes", "memory_plan"):  # dicts (or absent)
                planfile._expect(header.get(key) or {}, dict, f"{where} {key}")
        except (DistRtError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlanFileError(f"{where}: malformed metadata or profiles: {exc}") from None
        return cls(network, device=device, precision=precision,
                   plan_hash=str(header.get("plan_hash")),
                   memory_plan=header.get("memory_plan"), tactics=header.get("tactics") or {},
                   profiles=profiles, build_notes=header.get("build_notes") or {},
                   device_arch=str(header.get("device_arch")))


def _device_arch(device: str) -> str:
    if device == "cpu":
        return platform.machine() or "unknown"
    from dist_rt.runtime.backends import get_backend  # noqa: PLC0415

    return get_backend(device).device_arch()

"""``BuilderConfig``: what the builder is asked to produce (device, precision, profiles...).

Every field is checked when it is set, so a typo fails where it was made, not deep inside a
pass. Optimization levels::

    0  no graph rewriting (the reference build that ``--check`` compares against)
    1  constant folding + elimination of no-op layers
    2  level 1 + CSE, shape simplification and fusion passes (default)
    3  level 2 + tactic timing (see builder.passes.tactics)

Tactic timing also runs at lower levels when ``timing_cache`` is set. It is off by default so
builds stay fast and deterministic; ``--timing-cache FILE`` or level 3 turns it on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dist_rt.errors import BuildError

DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "fp16", "bf16")
#: The compute dtype of each precision.
PRECISION_DTYPES = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16)}


@dataclass(frozen=True)
class Profile:
    """An optimization profile: per-input shape bounds (TensorRT's min/opt/max).

    Attributes:
        name: Profile name.
        min: Input name -> smallest allowed shape.
        opt: Input name -> shape to optimize (and plan memory) for.
        max: Input name -> largest allowed shape.
    """

    name: str
    min: dict[str, tuple[int, ...]]
    opt: dict[str, tuple[int, ...]]
    max: dict[str, tuple[int, ...]]

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (used by the plan file)."""
        return {"name": self.name,
                **{k: {n: list(s) for n, s in getattr(self, k).items()}
                   for k in ("min", "opt", "max")}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Profile:
        """Inverse of :meth:`to_json`."""
        return cls(str(obj["name"]),
                   *({n: tuple(int(d) for d in s) for n, s in obj[k].items()}
                     for k in ("min", "opt", "max")))


def _shapes(profile: str, which: str, value: Any) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise BuildError(f"profile '{profile}': {which}= must map input names to shapes, "
                         f"got {type(value).__name__}")
    out = {}
    for name, shape in value.items():
        if (not isinstance(shape, Sequence) or isinstance(shape, str)
                or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape)):
            raise BuildError(f"profile '{profile}': {which} shape of input '{name}' must be a "
                             f"sequence of non-negative ints, got {shape!r}")
        out[str(name)] = tuple(int(d) for d in shape)
    return out


@dataclass
class BuilderConfig:
    """How to build an engine.

    Attributes:
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when CuPy finds a GPU, else CPU).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``: the dtype float math runs in.
        optimization_level: 0 (no rewriting) to 3; see the module docstring.
        timing_cache: Path of the tactic timing cache (JSON; read, then updated, by the
            tactic-selection pass; see ``builder.timing_cache``), or None.
        memory_limit: Largest activation arena in bytes, or None for no limit.
        verify: Check the IR after every pass (always on in tests; also set by the
            ``DIST_RT_VERIFY=1`` environment variable).
        profiles: Optimization profiles, added with :meth:`add_profile`.
    """

    device: str = "cpu"
    precision: str = "fp32"
    optimization_level: int = 2
    timing_cache: str | None = None
    memory_limit: int | None = None
    verify: bool = False
    profiles: list[Profile] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise BuildError(f"BuilderConfig: device {self.device!r} is not one of {DEVICES}")
        if self.precision not in PRECISIONS:
            raise BuildError(f"BuilderConfig: precision {self.precision!r} is not one of "
                             f"{PRECISIONS}")
        level = self.optimization_level
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3:
            raise BuildError(f"BuilderConfig: optimization_level must be an int in 0..3, "
                             f"got {level!r}")
        if self.timing_cache is not None and not isinstance(self.timing_cache, (str, os.PathLike)):
            raise BuildError(f"BuilderConfig: timing_cache must be a path, got "
                             f"{type(self.timing_cache).__name__}")
        limit = self.memory_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit <= 0):
            raise BuildError(f"BuilderConfig: memory_limit must be a positive number of "
                             f"bytes, got {limit!r}")
        if os.environ.get("DIST_RT_VERIFY", "") not in ("", "0"):
            self.verify = True

    @property
    def compute_dtype(self) -> np.dtype:
        """The NumPy dtype float math runs in under this precision."""
        from dist_rt.dtypes import bfloat16  # noqa: PLC0415 - keeps the module import light

        return bfloat16 if self.precision == "bf16" else PRECISION_DTYPES[self.precision]

    def add_profile(self, name: str, *, min: Mapping[str, Sequence[int]],  # noqa: A002
                    opt: Mapping[str, Sequence[int]],
                    max: Mapping[str, Sequence[int]]) -> Profile:  # noqa: A002
        """Add an optimization profile (shape bounds for dynamic inputs).

        Args:
            name: Unique profile name.
            min: Input name -> smallest shape.
            opt: Input name -> the shape to optimize for.
            max: Input name -> largest shape (memory is planned for it).

        Returns:
            The new profile.

        Raises:
            BuildError: A duplicate name, inputs listed in one bound but not the others,
                ranks that differ, or ``min <= opt <= max`` violated (names input and dim).
        """
        if any(p.name == name for p in self.profiles):
            raise BuildError(f"BuilderConfig: profile '{name}' is defined twice")
        lo, mid, hi = (_shapes(name, w, v) for w, v in (("min", min), ("opt", opt),
                                                         ("max", max)))
        if not (lo.keys() == mid.keys() == hi.keys()):
            raise BuildError(f"profile '{name}': min/opt/max must list the same inputs, got "
                             f"{sorted(lo)}, {sorted(mid)}, {sorted(hi)}")
        for inp in lo:
            if not len(lo[inp]) == len(mid[inp]) == len(hi[inp]):
                raise BuildError(f"profile '{name}': input '{inp}' has ranks "
                                 f"{len(lo[inp])}/{len(mid[inp])}/{len(hi[inp])} in min/opt/max")
            for d, (a, b, c) in enumerate(zip(lo[inp], mid[inp], hi[inp], strict=True)):
                if not a <= b <= c:
                    raise BuildError(f"profile '{name}': input '{inp}' dim {d} needs "
                                     f"min <= opt <= max, got {a}, {b}, {c}")
        profile = Profile(name, lo, mid, hi)
        self.profiles.append(profile)
        return profile

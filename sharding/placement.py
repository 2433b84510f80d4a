"""Placements: how one tensor is laid out over the ranks of a 1-D device mesh.

Like PyTorch DTensor's ``placement_types``: ``repr`` is for machines (``Shard(dim=0)``),
``str`` for people (``S(0)``)::

    placement    rank r holds                          turns into R by
    Replicate()  the whole tensor                      -
    Shard(d)     rows [r*c, (r+1)*c) of dim d, c=D/N   all_gather along d
    Partial(op)  a full-shape addend x_r, x = op(x_r)  all_reduce with op

A plan stores one tuple of placements per tensor (one entry per mesh dim; dist_rt's mesh is
1-D today, so the tuples have length 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dist_rt.errors import PlanFileError


@dataclass(frozen=True)
class Placement:
    """Base class of :class:`Shard`, :class:`Replicate` and :class:`Partial`."""

    def is_shard(self, dim: int | None = None) -> bool:
        """True for ``Shard`` (of ``dim`` when given)."""
        return False

    def is_replicate(self) -> bool:
        """True for ``Replicate``."""
        return False

    def is_partial(self) -> bool:
        """True for ``Partial``."""
        return False


@dataclass(frozen=True)
class Shard(Placement):
    """Dim ``dim`` split into N equal contiguous chunks, chunk r on rank r."""

    dim: int

    def is_shard(self, dim: int | None = None) -> bool:
        """True (and, when ``dim`` is given, only for that dim)."""
        return dim is None or dim == self.dim

    def __str__(self) -> str:
        return f"S({self.dim})"


@dataclass(frozen=True)
class Replicate(Placement):
    """Every rank holds the whole tensor."""

    def is_replicate(self) -> bool:
        """True."""
        return True

    def __str__(self) -> str:
        return "R"


@dataclass(frozen=True)
class Partial(Placement):
    """Every rank holds a full-shape partial value; the tensor is ``op`` over the ranks."""

    op: str = "sum"

    def is_partial(self) -> bool:
        """True."""
        return True

    def __str__(self) -> str:
        return "P" if self.op == "sum" else f"P({self.op})"


R = Replicate()
P = Partial("sum")

_TEXT = re.compile(r"^\s*(?:S\((-?\d+)\)|Shard\(\s*(?:dim\s*=\s*)?(-?\d+)\s*\)|(R)|Replicate\(\)"
                   r"|(P)|Partial\(\s*(?:op\s*=\s*)?'?(\w*)'?\s*\)|P\((\w+)\))\s*$")


def parse_placement(text: str, where: str = "") -> Placement:
    """Read a placement written as ``S(1)``, ``Shard(dim=1)``, ``R``, ``Replicate()``, ``P``.

    Args:
        text: The placement text (``str`` or ``repr`` form).
        where: What the text belongs to, for error messages.

    Returns:
        The placement.

    Raises:
        PlanFileError: ``text`` is not a placement.
    """
    m = _TEXT.match(str(text))
    if not m:
        raise PlanFileError(f"{where}{text!r} is not a placement; expected S(dim), R or P "
                            f"(or Shard(dim=d), Replicate(), Partial())")
    s1, s2, _r, p, pop, pop2 = m.groups()
    if s1 is not None or s2 is not None:
        return Shard(int(s1 if s1 is not None else s2))
    if p is not None or pop is not None or pop2 is not None:
        return Partial(pop or pop2 or "sum")
    return R


def normalize(placement: Placement, rank: int) -> Placement:
    """Map ``Shard(-1)`` style negative dims to ``[0, rank)``."""
    if isinstance(placement, Shard) and placement.dim < 0:
        return Shard(placement.dim % rank)
    return placement

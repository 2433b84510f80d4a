"""Network edits shared by the cleanup passes (CSE, elimination, constant folding)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dist_rt.network import Layer, Network


def binding_names(network: Network) -> set[str]:
    """Names of the network's inputs and outputs: a pass must keep them."""
    return {t.name for t in network.inputs} | {t.name for t in network.outputs}


def remove_and_prune(network: Network, layers: Iterable[Layer]) -> int:
    """Remove ``layers``, then every layer and constant that no output depends on.

    Returns:
        The number of layers pruned besides ``layers``.
    """
    network.remove_layers(layers)
    return network.prune()

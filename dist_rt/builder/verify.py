"""IR verification between passes (tinygrad's ``type_verify`` idea).

A pass that leaves the graph inconsistent should fail right where it ran, not three passes
later inside a kernel. :func:`verify` checks structure (``Network.validate``), that every
tensor read has a dtype, that constants match their declared dtype and shape, and that
re-running each op's inference gives the dtypes and static shapes recorded on its outputs.
"""

from __future__ import annotations

from dist_rt.errors import BuildError, DistRtError
from dist_rt.network import Network, format_shape


def _compatible(recorded, inferred) -> bool:
    if recorded is None or inferred is None:
        return True
    if len(recorded) != len(inferred):
        return False
    return all(not (isinstance(a, int) and isinstance(b, int)) or a == b
               for a, b in zip(recorded, inferred, strict=True))


def verify(network: Network, after: str) -> None:
    """Check that ``network`` is consistent.

    Args:
        network: The network to check (not modified beyond ``toposort``).
        after: Name of the pass that just ran (for the message).

    Raises:
        BuildError: Names the pass, the tensor or layer, and what is inconsistent.
    """
    try:
        network.validate()
    except DistRtError as exc:
        raise BuildError(f"IR invalid after pass '{after}': {exc}") from exc
    for t in network.tensors.values():
        if t.weights is not None and (t.weights.dtype != t.dtype
                                      or tuple(t.weights.shape) != tuple(t.shape or ())):
            raise BuildError(f"IR invalid after pass '{after}': constant '{t.name}' is "
                             f"declared {t.dtype}{format_shape(t.shape)} but holds "
                             f"{t.weights.dtype}{format_shape(t.weights.shape)}")
    for layer in network.layers:
        descs = [None if t is None else t.desc() for t in layer.inputs]
        for i, t in enumerate(layer.inputs):
            if t is not None and t.dtype is None:
                raise BuildError(f"IR invalid after pass '{after}': layer '{layer.name}' "
                                 f"({layer.op_type}) input {i} '{t.name}' has no dtype")
        try:
            outs = layer.op.infer(layer, descs)
        except DistRtError as exc:
            raise BuildError(f"IR invalid after pass '{after}': {exc}") from exc
        for t, d in zip(layer.outputs, outs, strict=False):
            if d.dtype is not None and t.dtype is not None and d.dtype != t.dtype:
                raise BuildError(f"IR invalid after pass '{after}': layer '{layer.name}' "
                                 f"({layer.op_type}) output '{t.name}' is recorded as "
                                 f"{t.dtype}, inference gives {d.dtype}")
            if not _compatible(t.shape, d.shape):
                raise BuildError(f"IR invalid after pass '{after}': layer '{layer.name}' "
                                 f"({layer.op_type}) output '{t.name}' is recorded as "
                                 f"{format_shape(t.shape)}, inference gives "
                                 f"{format_shape(d.shape)}")

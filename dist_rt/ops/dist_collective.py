"""DistCollective: a collective across ranks, run through the attached communicator.

Attributes (TensorRT-compatible names): ``collective_operation`` (all_reduce, all_gather,
broadcast, reduce, reduce_scatter, all_to_all, gather, scatter; any case), ``reduce_op``
(sum, prod, max, min, avg), ``root`` (group rank), ``group`` (ordered world ranks; empty =
all), ``group_size`` (TensorRT's spelling of the group's size), ``axis``.

With ``n`` ranks in the group, along ``axis`` (see ``collectives.communicator``)::

    all_gather, gather  d -> n*d          reduce_scatter, scatter  n*d -> d
    others              d -> d

Non-root ranks of ``gather`` get a zero tensor of the root's shape, so every rank's engine has
the same static shapes (SPMD).
"""

from __future__ import annotations

from dist_rt.errors import CommunicatorError, ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op

_OPS = ("all_reduce", "all_gather", "broadcast", "reduce", "reduce_scatter", "all_to_all",
        "gather", "scatter")


def collective_of(layer) -> tuple[str, str, int, list[int], int]:
    """Parse a DistCollective layer's attributes: (operation, reduce_op, root, group, axis)."""
    operation = str(layer.attr("collective_operation", "all_reduce")).lower()
    if operation not in _OPS:
        raise ShapeError(f"layer '{layer.name}' (DistCollective): collective_operation "
                         f"{operation!r} is not one of {_OPS}")
    reduce_op = str(layer.attr("reduce_op", "sum")).lower()
    group = [int(g) for g in layer.attr("group", []) or []]
    return operation, reduce_op, int(layer.attr("root", 0)), group, int(layer.attr("axis", 0))


def group_size(layer) -> int:
    """Number of ranks the collective spans (``group``, ``group_size`` or ``nb_ranks``)."""
    group = layer.attr("group", []) or []
    if group:
        return len(group)
    return int(layer.attr("group_size", 0) or layer.nb_ranks or 1)


@register_op("DistCollective", since_opset=1)
class DistCollective(Op):
    """One collective over the layer's group of ranks."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        operation, _, _, _, axis = collective_of(layer)
        if x.shape is None:
            return [TensorDesc(x.dtype, None)]
        n = group_size(layer)
        shape = list(x.shape)
        if shape:
            axis = normalize_axis(layer, axis, len(shape))
            d = shape[axis]
            if operation in ("all_gather", "gather"):
                shape[axis] = d * n if isinstance(d, int) else None
            elif operation in ("reduce_scatter", "scatter"):
                if isinstance(d, int) and d % n:
                    raise ShapeError(f"layer '{layer.name}' (DistCollective): {operation} "
                                     f"needs dim {axis} ({d}) divisible by {n} ranks")
                shape[axis] = d // n if isinstance(d, int) else None
        return [TensorDesc(x.dtype, tuple(shape))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        operation, reduce_op, root, group, axis = collective_of(layer)
        comm = rt.communicator
        n = group_size(layer)
        if comm is None:
            if n > 1:
                raise CommunicatorError(f"layer '{layer.name}' spans {n} ranks but no "
                                        f"communicator is attached (ExecutionContext."
                                        f"set_communicator)")
            return [x.copy()]
        if x.ndim:
            axis %= x.ndim
        if operation == "all_reduce":
            return [comm.all_reduce(x, op=reduce_op, group=group)]
        if operation == "all_gather":
            return [comm.all_gather(x, axis=axis, group=group)]
        if operation == "broadcast":
            return [comm.broadcast(x, root=root, group=group)]
        if operation == "reduce":
            return [comm.reduce(x, op=reduce_op, root=root, group=group)]
        if operation == "reduce_scatter":
            return [comm.reduce_scatter(x, op=reduce_op, axis=axis, group=group)]
        if operation == "all_to_all":
            return [comm.all_to_all(x, axis=axis, group=group)]
        if operation == "scatter":
            return [comm.scatter(x, root=root, axis=axis, group=group)]
        out = comm.gather(x, root=root, axis=axis, group=group)
        members = group or list(range(comm.size))
        if members.index(comm.rank) != root:
            shape = list(x.shape)
            shape[axis] *= n
            out = rt.xp.zeros(shape, x.dtype)
        return [out]

"""Loop: a body run while ``cond`` holds and fewer than ``M`` iterations have run.

Body inputs: (iteration number, condition, loop-carried values...); body outputs:
(condition, loop-carried values..., scan outputs...). Outputs: the final loop-carried
values, then each scan output's per-iteration values stacked on a new axis 0.
"""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, register_op
from dist_rt.ops._subgraph import (
    explicit_descs,
    formal_inputs,
    output_descs,
    run_subgraph,
    scalar,
    split_inputs,
)


@register_op("Loop", since_opset=1)
class Loop(Op):
    """``for i in range(M) while cond: cond, v..., scan... = body(i, cond, v...)``."""

    deterministic = True

    @classmethod
    def infer(cls, layer, inputs):
        own = explicit_descs(layer, inputs)
        body = output_descs(layer.attributes["body"])[1:]
        carried = len(own) - 2
        outs = []
        for i, desc in enumerate(body):
            if i < carried:
                init = own[2 + i]
                kind = desc.kind if init is None else init.kind
                dtype = desc.dtype if desc.dtype is not None or init is None else init.dtype
                outs.append(TensorDesc(dtype, None, None, kind))
            else:
                shape = None if desc.shape is None else (None, *desc.shape)
                outs.append(TensorDesc(desc.dtype, shape))
        return outs

    @classmethod
    def _run(cls, layer, inputs, rt):
        own, outer = split_inputs(layer, inputs)
        xp = rt.xp
        body = layer.attributes["body"]
        formal = formal_inputs(body)
        trips = None if own[0] is None else int(scalar(own[0]))
        keep = True if len(own) < 2 or own[1] is None else bool(scalar(own[1]))
        carried = list(own[2:])
        scans: list[list] = [[] for _ in range(len(body.outputs) - 1 - len(carried))]
        i = 0
        while keep and (trips is None or i < trips):
            feeds = dict(outer)
            feeds[formal[0].name] = xp.asarray(i, dtype=np.int64)
            feeds[formal[1].name] = xp.asarray(keep, dtype=np.bool_)
            feeds.update((t.name, v) for t, v in zip(formal[2:], carried, strict=False))
            outs = run_subgraph(body, feeds, rt)
            keep = bool(scalar(outs[0]))
            carried = outs[1:1 + len(carried)]
            for acc, value in zip(scans, outs[1 + len(carried):], strict=True):
                acc.append(value)
            i += 1
        stacked = []
        for acc, t in zip(scans, body.outputs[1 + len(carried):], strict=True):
            if acc:
                stacked.append(xp.stack([xp.asarray(a) for a in acc]))
            else:
                dims = tuple(d if isinstance(d, int) else 0 for d in (t.shape or ()))
                stacked.append(xp.zeros((0, *dims), dtype=t.dtype or np.float32))
        return carried + stacked

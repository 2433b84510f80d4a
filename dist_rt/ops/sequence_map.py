"""SequenceMap: run ``body`` once per element of the input sequence(s).

Inputs: a sequence, then further sequences (same length) or tensors (passed whole to every
iteration). Each body output is collected into an output sequence.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, register_op
from dist_rt.ops._subgraph import formal_inputs, output_descs, run_subgraph, split_inputs


@register_op("SequenceMap", since_opset=17)
class SequenceMap(Op):
    """``[body(s0[i], s1[i] or t1, ...) for i in range(len(s0))]`` per body output."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(d.dtype, None, None, "sequence")
                for d in output_descs(layer.attributes["body"])]

    @classmethod
    def _run(cls, layer, inputs, rt):
        own, outer = split_inputs(layer, inputs)
        body = layer.attributes["body"]
        formal = formal_inputs(body)
        length = len(own[0])
        for i, value in enumerate(own):
            if isinstance(value, list) and len(value) != length:
                raise ShapeError(f"layer '{layer.name}' (SequenceMap): input {i} has "
                                 f"{len(value)} elements, input 0 has {length}")
        results: list[list] = [[] for _ in body.outputs]
        for i in range(length):
            feeds = dict(outer)
            feeds.update((f.name, v[i] if isinstance(v, list) else v)
                         for f, v in zip(formal, own, strict=False))
            for acc, value in zip(results, run_subgraph(body, feeds, rt), strict=True):
                acc.append(value)
        return results

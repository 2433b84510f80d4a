"""If: run ``then_branch`` or ``else_branch`` on a condition known only at run time.

(An If whose condition is known at build time is inlined by the importer.)
"""

from __future__ import annotations

from dist_rt.ops._op import Op, register_op
from dist_rt.ops._subgraph import merge_descs, output_descs, run_subgraph, scalar, split_inputs


@register_op("If", since_opset=1)
class If(Op):
    """``outputs = then_branch() if cond else else_branch()``; branches read outer tensors."""

    @classmethod
    def infer(cls, layer, inputs):
        then = output_descs(layer.attributes["then_branch"])
        other = output_descs(layer.attributes["else_branch"])
        return [merge_descs(a, b) for a, b in zip(then, other, strict=False)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        own, outer = split_inputs(layer, inputs)
        branch = layer.attributes["then_branch" if scalar(own[0]) else "else_branch"]
        return run_subgraph(branch, outer, rt)

"""A small ``onnx.helper`` wrapper the model generators share.

The generators write graphs node by node, the way PyTorch's exporters lay them out. Doing that
with bare ``onnx.helper`` means repeating node names, output names and initializer plumbing on
every line; :class:`GraphBuilder` keeps one line per node. Node and value names follow the
legacy TorchScript exporter's scheme (``/model/layers.0/self_attn/q_proj/MatMul`` producing
``/model/layers.0/self_attn/q_proj/MatMul_output_0``) because it is the most readable of the
exporter schemes and keeps the module path of every node visible to the sharding planner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Default-domain opset every generator targets (ReduceMean takes axes as an input from 18).
OPSET = 18

#: numpy dtype name -> ONNX element type, for the dtypes the generators accept.
ELEM_TYPE = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16,
    "int64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}

Dim = int | str | None


def np_dtype(name: str) -> np.dtype:
    """Returns the numpy dtype for a generator ``dtype`` name (bfloat16 via ml_dtypes).

    Args:
        name: One of ``float32``, ``float16``, ``bfloat16``.

    Returns:
        The numpy dtype.

    Raises:
        ValueError: For any other name.
    """
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if name not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {name!r}")
    return np.dtype(name)


class GraphBuilder:
    """Accumulates nodes, initializers and graph inputs/outputs for one model.

    Args:
        name: Graph name.
        dtype: Float dtype name of the weights and activations.
        seed: Seed of the numpy Generator that draws the random weights.
    """

    def __init__(self, name: str, dtype: str = "float32", seed: int = 0) -> None:
        self.name = name
        self.dtype = np_dtype(dtype)
        self.elem_type = ELEM_TYPE[dtype]
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()
        self._consts: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    # -- values ----------------------------------------------------------------------------

    def _unique(self, name: str) -> str:
        # Exporters suffix repeated scopes with _1, _2, ...; do the same so names stay unique.
        base, i = name, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Adds ``array`` as an initializer called ``name`` and returns the name."""
        name = self._unique(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, name: str, shape: Sequence[int], std: float, mean: float = 0.0) -> str:
        """Adds a normal-random weight in the model dtype.

        Args:
            name: Initializer name (exporters use the parameter's module path).
            shape: Weight shape.
            std: Standard deviation; callers pick it so activations stay O(1).
            mean: Mean (1.0 for norm scales).

        Returns:
            The initializer name.
        """
        values = self.rng.normal(mean, std, size=tuple(shape)).astype(np.float32)
        return self.initializer(name, values.astype(self.dtype))

    def const(self, value: Any, dtype: Any = None, name: str | None = None) -> str:
        """Adds (or reuses) a small constant initializer.

        Integer Python values become int64, floats become the model dtype, as exporters emit
        them. Identical constants are shared.

        Args:
            value: Scalar or nested list / array.
            dtype: Explicit numpy dtype; inferred when None.
            name: Name hint.

        Returns:
            The initializer name.
        """
        if dtype is None:
            probe = np.asarray(value)
            dtype = np.int64 if probe.dtype.kind in "iu" else self.dtype
        array = np.asarray(value, dtype=dtype)
        key = (str(array.dtype), array.tobytes(), array.shape)
        if key not in self._consts:
            self._consts[key] = self.initializer(name or f"val_{len(self._consts)}", array)
        return self._consts[key]

    def add_input(self, name: str, elem_type: int, shape: Sequence[Dim]) -> str:
        """Declares a graph input; ``str`` dims are symbolic."""
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        self._names.add(name)
        return name

    def add_output(self, value: str, elem_type: int, shape: Sequence[Dim],
                   name: str | None = None) -> None:
        """Declares ``value`` a graph output, renamed to ``name`` when given.

        Renaming rewrites the producer and every consumer, so the graph output carries the
        public name (``logits``) without an Identity node, as exporters name their outputs.
        """
        if name is not None and name != value:
            for node in self.nodes:
                for io in (node.input, node.output):
                    for j, v in enumerate(io):
                        if v == value:
                            io[j] = name
            self._names.add(name)
            value = name
        self.outputs.append(helper.make_tensor_value_info(value, elem_type, list(shape)))

    # -- nodes -----------------------------------------------------------------------------

    def node(
        self,
        op: str,
        inputs: Sequence[str],
        scope: str = "",
        *,
        outputs: int | Sequence[str] = 1,
        **attrs: Any,
    ) -> Any:
        """Appends one node and returns its output name (or list of names).

        Args:
            op: Default-domain op type.
            inputs: Input value names ("" for an omitted optional input).
            scope: Module path such as ``/model/layers.0/mlp``; the node is named
                ``{scope}/{op}``.
            outputs: Number of outputs, or explicit output names.
            **attrs: Node attributes.

        Returns:
            The single output name, or a list when the node has several outputs.
        """
        node_name = self._unique(f"{scope}/{op}")
        if isinstance(outputs, int):
            names = [f"{node_name}_output_{i}" for i in range(outputs)]
        else:
            names = list(outputs)
        self._names.update(names)
        self.nodes.append(helper.make_node(op, list(inputs), names, name=node_name, **attrs))
        return names[0] if len(names) == 1 else names

    def unsqueeze(self, x: str, axes: Sequence[int], scope: str = "") -> str:
        """Unsqueeze with ``axes`` as an int64 constant input (opset 13+ form)."""
        return self.node("Unsqueeze", [x, self.const(list(axes))], scope)

    def dim(self, x: str, axis: int, scope: str = "") -> str:
        """``Shape -> Gather(axis) -> Unsqueeze`` : the 1-D size of ``x`` along ``axis``.

        This is the chain exporters emit for every ``x.size(axis)`` that feeds a shape.
        """
        shape = self.node("Shape", [x], scope)
        size = self.node("Gather", [shape, self.const(axis)], scope, axis=0)
        return self.unsqueeze(size, [0], scope)

    def shape_of(self, parts: Sequence[str | int], scope: str = "") -> str:
        """Concatenates 1-D dims and int literals into a shape tensor, as exporters do."""
        pieces = [p if isinstance(p, str) else self.const([p]) for p in parts]
        return self.node("Concat", pieces, scope, axis=0)

    # -- finishing -------------------------------------------------------------------------

    def build(self, doc: str = "", producer: str = "dist_rt.models") -> onnx.ModelProto:
        """Returns the finished, checker-clean model at :data:`OPSET`.

        Args:
            doc: ``doc_string`` of the model (the generator config, for provenance).
            producer: ``producer_name``.

        Returns:
            The ModelProto.
        """
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, initializer=self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=producer,
            doc_string=doc,
        )
        # ir_version 8 keeps the models loadable by older onnxruntime builds too.
        model.ir_version = 8
        return model

"""The network IR: tensors, layers and the graph that holds them.

A :class:`Network` is what the ONNX importer produces, what the sharding planner partitions
and what the builder compiles. Layers follow ONNX semantics (one IR op per ONNX op, the
op's attributes kept by name) plus dist_rt's own ops (``DistCollective``, ``Attention``).

It can also be written by hand, in the style of TensorRT's ``INetworkDefinition``::

    net = Network("mlp")
    x = net.add_input("x", np.float32, ("batch", 64))
    w = net.add_constant("w", np.random.rand(64, 32).astype(np.float32))
    y = net.add_activation(net.add_matmul(x, w), "Relu")
    net.mark_output(y)
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import DistRtError, GraphError, ShapeError
from dist_rt.ops import _op
from dist_rt.ops._op import Dim, Shape, TensorDesc
from dist_rt.weights import Weights

DEFAULT_OPSET = 21
#: Values above this many elements are not propagated at build time (only shape arithmetic is).
_MAX_FOLD_ELEMENTS = 1 << 16


def format_shape(shape: Shape) -> str:
    """``(2, 'seq', ?)`` style text for a possibly symbolic shape."""
    if shape is None:
        return "(?)"
    dims = ["?" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class Tensor:
    """A named value in the graph: a network input, a constant or a layer output.

    Attributes:
        name: Unique name within the network.
        dtype: NumPy dtype (None when not yet inferred).
        shape: Dims (int, symbolic str or None), or None when the rank is unknown.
        weights: The data of a constant tensor, else None.
        producer: The layer that computes it (None for inputs and constants).
        kind: ``"tensor"``, ``"sequence"`` (run-time value: a list of arrays; ``dtype`` is
            the element dtype) or ``"optional"`` (run-time value: None or the element).
    """

    __slots__ = ("name", "dtype", "shape", "weights", "producer", "kind")

    def __init__(self, name: str, dtype: Any = None, shape: Shape = None,
                 weights: Weights | None = None):
        self.name = name
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.shape = None if shape is None else tuple(shape)
        self.weights = weights
        self.producer: Layer | None = None
        self.kind = "tensor"

    @property
    def is_constant(self) -> bool:
        """True when the tensor holds weights."""
        return self.weights is not None

    @property
    def rank(self) -> int | None:
        """Number of dims, or None when unknown."""
        return None if self.shape is None else len(self.shape)

    def desc(self) -> TensorDesc:
        """A :class:`TensorDesc` of this tensor (value set for small constants)."""
        value = None
        if self.weights is not None and self.weights.size <= _MAX_FOLD_ELEMENTS:
            value = self.weights.numpy()
        return TensorDesc(self.dtype, self.shape, value, self.kind)

    def __repr__(self) -> str:
        dt = "?" if self.dtype is None else dtypes.name_of(self.dtype)
        return f"Tensor({self.name!r}, {dt}, {format_shape(self.shape)})"


class Layer:
    """One operation of the network.

    Attributes:
        name: Unique layer name.
        op_type: Operator name (ONNX op or ``DistCollective``/``Attention``...).
        domain: Operator domain (``""`` = ONNX default).
        opset: Opset version of ``domain`` the layer follows (ONNX semantics of that version).
        inputs: Input tensors; ``None`` marks an omitted optional input.
        outputs: Output tensors.
        attributes: ONNX attributes by name (ints, floats, strings, lists, NumPy arrays).
        nb_ranks: Number of ranks the layer is spread over (1 unless sharded).
        metadata: Free-form notes (source ONNX node, sharding decisions, fused layers).
    """

    __slots__ = ("name", "op_type", "domain", "opset", "inputs", "outputs", "attributes",
                 "nb_ranks", "metadata")

    def __init__(self, name: str, op_type: str, inputs: Sequence[Tensor | None],
                 outputs: Sequence[Tensor], attributes: dict[str, Any] | None = None,
                 domain: str = "", opset: int = DEFAULT_OPSET, nb_ranks: int = 1):
        self.name = name
        self.op_type = op_type
        self.domain = domain
        self.opset = opset
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attributes = dict(attributes or {})
        self.nb_ranks = nb_ranks
        self.metadata: dict[str, Any] = {}

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute ``name``, or ``default`` when it is not set."""
        return self.attributes.get(name, default)

    @property
    def op(self) -> type[_op.Op]:
        """The registered implementation of this layer's op."""
        return _op.get_op(self.op_type, self.domain, self.opset)

    def __repr__(self) -> str:
        ins = ", ".join("-" if t is None else t.name for t in self.inputs)
        outs = ", ".join(t.name for t in self.outputs)
        return f"Layer({self.name!r}, {self.op_type}, [{ins}] -> [{outs}])"


class Network:
    """A directed acyclic graph of layers over tensors.

    Attributes:
        name: Model name.
        opsets: Opset version per domain (``""`` is the default ONNX domain).
        tensors: Every tensor by name.
        layers: Layers, in topological order after :meth:`toposort`.
        inputs: Network inputs (bindings), in order.
        outputs: Network outputs (bindings), in order.
        metadata: Free-form notes (producer, sharding rank/world size...).
    """

    def __init__(self, name: str = "network", opset: int = DEFAULT_OPSET):
        self.name = name
        self.opsets: dict[str, int] = {"": opset}
        self.tensors: dict[str, Tensor] = {}
        self.layers: list[Layer] = []
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self.metadata: dict[str, Any] = {}
        # A plain int (not itertools.count) so copy.deepcopy works on Python 3.14 too.
        self._next_id = 0

    # -- construction ----------------------------------------------------------------------

    @property
    def opset(self) -> int:
        """Opset of the default ONNX domain."""
        return self.opsets.get("", DEFAULT_OPSET)

    def unique_name(self, base: str) -> str:
        """A tensor/layer name starting with ``base`` that is not used yet."""
        layer_names = {lay.name for lay in self.layers}
        while True:
            name = f"{base}_{self._next_id}"
            self._next_id += 1
            if name not in self.tensors and name not in layer_names:
                return name

    def _new_tensor(self, name: str, dtype: Any = None, shape: Shape = None,
                    weights: Weights | None = None) -> Tensor:
        if not name:
            raise GraphError("tensor names must not be empty")
        if name in self.tensors:
            raise GraphError(f"tensor '{name}' is defined twice")
        tensor = Tensor(name, dtype, shape, weights)
        self.tensors[name] = tensor
        return tensor

    def add_input(self, name: str, dtype: Any, shape: Sequence[Dim]) -> Tensor:
        """Declare a network input (a binding the caller feeds)."""
        tensor = self._new_tensor(name, dtype, tuple(shape))
        self.inputs.append(tensor)
        return tensor

    def add_constant(self, name: str, value: Any) -> Tensor:
        """Add a constant tensor from an array (or :class:`Weights`)."""
        weights = value if isinstance(value, Weights) else Weights(np.asarray(value))
        return self._new_tensor(name, weights.dtype, weights.shape, weights)

    def add_layer(self, op_type: str, inputs: Sequence[Tensor | str | None],
                  attributes: dict[str, Any] | None = None, *, name: str | None = None,
                  outputs: int | Sequence[str] = 1, domain: str = "",
                  infer: bool = True) -> Layer:
        """Append a layer and create its output tensors.

        Args:
            op_type: Operator name; must be registered (see ``dist_rt.ops``).
            inputs: Input tensors or their names; ``None`` for omitted optional inputs.
            attributes: ONNX-style attributes.
            name: Layer name (generated when None).
            outputs: Number of outputs (names generated) or their names.
            domain: Operator domain.
            infer: Run shape/dtype inference for the new outputs.

        Returns:
            The new layer; ``layer.outputs`` are its tensors.

        Raises:
            GraphError: An input name is unknown or an output name is taken.
            UnsupportedOpError: ``op_type`` is not registered.
        """
        name = name or self.unique_name(op_type.lower())
        ins: list[Tensor | None] = []
        for i, t in enumerate(inputs):
            if t is None or t == "":
                ins.append(None)
            elif isinstance(t, Tensor):
                if self.tensors.get(t.name) is not t:
                    raise GraphError(f"layer '{name}' ({op_type}): input {i} tensor '{t.name}' "
                                     f"does not belong to this network")
                ins.append(t)
            else:
                if t not in self.tensors:
                    raise GraphError(f"layer '{name}' ({op_type}): input {i} '{t}' is not "
                                     f"defined before use")
                ins.append(self.tensors[t])
        names = [f"{name}_out{i}" if outputs > 1 else f"{name}_out" for i in range(outputs)] \
            if isinstance(outputs, int) else list(outputs)
        outs = [self._new_tensor(n) for n in names]
        layer = Layer(name, op_type, ins, outs, attributes, domain=domain,
                      opset=self.opsets.get(domain, DEFAULT_OPSET if not domain else 1))
        for t in outs:
            t.producer = layer
        self.layers.append(layer)
        if infer:
            self.infer_layer(layer)
        return layer

    def mark_output(self, tensor: Tensor | str) -> None:
        """Make ``tensor`` a network output."""
        t = self.tensors[tensor] if isinstance(tensor, str) else tensor
        if t not in self.outputs:
            self.outputs.append(t)

    # -- the builder-style helpers (TensorRT INetworkDefinition-like) ------------------------

    def add_matmul(self, a: Tensor, b: Tensor) -> Tensor:
        """``a @ b`` with NumPy matmul semantics."""
        return self.add_layer("MatMul", [a, b]).outputs[0]

    def add_elementwise(self, a: Tensor, b: Tensor, op: str) -> Tensor:
        """Broadcasting binary op: ``Add``, ``Sub``, ``Mul``, ``Div``, ``Pow``, ``Max``..."""
        return self.add_layer(op, [a, b]).outputs[0]

    def add_activation(self, x: Tensor, kind: str, **attributes: Any) -> Tensor:
        """Unary activation: ``Relu``, ``Sigmoid``, ``Tanh``, ``Gelu``, ``Erf``..."""
        return self.add_layer(kind, [x], attributes).outputs[0]

    def add_softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """Softmax over ``axis``."""
        return self.add_layer("Softmax", [x], {"axis": axis}).outputs[0]

    def add_reshape(self, x: Tensor, shape: Sequence[int]) -> Tensor:
        """Reshape to ``shape`` (ONNX rules: 0 copies a dim, -1 is inferred)."""
        target = self.add_constant(self.unique_name("shape"), np.asarray(shape, np.int64))
        return self.add_layer("Reshape", [x, target]).outputs[0]

    def add_transpose(self, x: Tensor, perm: Sequence[int]) -> Tensor:
        """Permute dims."""
        return self.add_layer("Transpose", [x], {"perm": list(perm)}).outputs[0]

    def add_gather(self, data: Tensor, indices: Tensor, axis: int = 0) -> Tensor:
        """``take(data, indices, axis)``."""
        return self.add_layer("Gather", [data, indices], {"axis": axis}).outputs[0]

    def add_concat(self, tensors: Sequence[Tensor], axis: int) -> Tensor:
        """Concatenate along ``axis``."""
        return self.add_layer("Concat", list(tensors), {"axis": axis}).outputs[0]

    def add_collective(self, x: Tensor, operation: str, *, reduce_op: str = "sum",
                       root: int = 0, group: Sequence[int] | None = None, axis: int = 0,
                       nb_ranks: int = 1) -> Tensor:
        """Insert a ``DistCollective`` layer (all_reduce, all_gather, ...)."""
        attrs = {"collective_operation": operation, "reduce_op": reduce_op, "root": root,
                 "group": list(group) if group is not None else [], "axis": axis}
        layer = self.add_layer("DistCollective", [x], attrs, infer=False)
        layer.nb_ranks = len(group) if group else nb_ranks
        self.infer_layer(layer)
        return layer.outputs[0]

    # -- queries ---------------------------------------------------------------------------

    def consumers(self) -> dict[str, list[Layer]]:
        """Map tensor name -> layers reading it."""
        users: dict[str, list[Layer]] = {name: [] for name in self.tensors}
        for layer in self.layers:
            for t in layer.inputs:
                if t is not None:
                    users[t.name].append(layer)
        return users

    def layer(self, name: str) -> Layer:
        """The layer called ``name``.

        Raises:
            GraphError: No such layer.
        """
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise GraphError(f"network '{self.name}' has no layer '{name}'")

    @property
    def constants(self) -> list[Tensor]:
        """Constant (weight) tensors, in name order."""
        return [t for t in self.tensors.values() if t.is_constant]

    def weight_bytes(self) -> int:
        """Total bytes of constant tensors."""
        return sum(t.weights.nbytes for t in self.constants)

    # -- editing (used by passes and the partitioner) ---------------------------------------

    def replace_uses(self, old: Tensor, new: Tensor) -> None:
        """Make every reader of ``old`` (layers and network outputs) read ``new``."""
        for layer in self.layers:
            layer.inputs = [new if t is old else t for t in layer.inputs]
        self.outputs = [new if t is old else t for t in self.outputs]

    def remove_layers(self, layers: Iterable[Layer]) -> None:
        """Drop layers (and their output tensors when nothing else defines them)."""
        doomed = {id(lay) for lay in layers}
        kept = []
        for lay in self.layers:
            if id(lay) in doomed:
                for t in lay.outputs:
                    if self.tensors.get(t.name) is t and t.producer is lay:
                        del self.tensors[t.name]
            else:
                kept.append(lay)
        self.layers = kept

    def prune(self) -> int:
        """Remove layers and constants that no output depends on. Returns layers removed."""
        needed = {t.name for t in self.outputs}
        live: list[Layer] = []
        for layer in reversed(self.layers):
            if any(t.name in needed for t in layer.outputs):
                live.append(layer)
                needed.update(t.name for t in layer.inputs if t is not None)
        removed = len(self.layers) - len(live)
        dead = [lay for lay in self.layers if lay not in live]
        self.remove_layers(dead)
        inputs = {t.name for t in self.inputs}
        for name in [n for n, t in self.tensors.items()
                     if t.is_constant and n not in needed and n not in inputs]:
            del self.tensors[name]
        return removed

    def copy(self) -> Network:
        """A structural copy; weights are shared, not copied.

        The result is ``copy.deepcopy(self)`` with the weights kept: the tensors and layers
        are created here, slot by slot, instead of through deepcopy's generic
        ``__reduce_ex__`` walk (0.15 s for the ~5000 objects of a 1B-parameter Llama, and a
        build copies twice). Everything else (shapes, attributes, metadata, anything reached
        from them) still goes through ``copy.deepcopy`` with the same memo, so shared
        objects stay shared within the copy and a tensor or layer not in the network is
        deep-copied as before.
        """
        memo: dict[int, Any] = {id(t.weights): t.weights for t in self.tensors.values()
                                if t.weights is not None}
        pairs = [(t, _shell(t, memo)) for t in self.tensors.values()]
        pairs += [(lay, _shell(lay, memo)) for lay in self.layers]
        for old, new in pairs:
            for slot in _slots(type(old)):
                if hasattr(old, slot):
                    setattr(new, slot, _copied(getattr(old, slot), memo))
            if hasattr(old, "__dict__"):  # a subclass without __slots__
                new.__dict__.update(copy.deepcopy(old.__dict__, memo))
        clone = _shell(self, memo)
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    # -- validation and ordering -------------------------------------------------------------

    def toposort(self) -> None:
        """Order layers so each runs after the producers of its inputs.

        Raises:
            GraphError: The graph has a cycle (names a layer on it) or a tensor is produced
                by two layers.
        """
        producer: dict[str, Layer] = {}
        for layer in self.layers:
            for t in layer.outputs:
                if t.name in producer:
                    raise GraphError(f"tensor '{t.name}' is produced by both layer "
                                     f"'{producer[t.name].name}' and layer '{layer.name}'")
                producer[t.name] = layer
        state: dict[int, int] = {}
        order: list[Layer] = []
        for root in self.layers:
            if state.get(id(root)):
                continue
            stack: list[tuple[Layer, int]] = [(root, 0)]
            state[id(root)] = 1
            while stack:
                layer, i = stack.pop()
                deps = [producer[t.name] for t in layer.inputs
                        if t is not None and t.name in producer]
                if i < len(deps):
                    stack.append((layer, i + 1))
                    dep = deps[i]
                    s = state.get(id(dep), 0)
                    if s == 1:
                        raise GraphError(f"the graph has a cycle through layer '{dep.name}' "
                                         f"({dep.op_type})")
                    if s == 0:
                        state[id(dep)] = 1
                        stack.append((dep, 0))
                else:
                    state[id(layer)] = 2
                    order.append(layer)
        self.layers = order

    def validate(self) -> None:
        """Check the graph is well formed: names unique, every input defined, acyclic,
        outputs produced, every op registered.

        Raises:
            GraphError: Structural problem (names the tensor or layer).
            UnsupportedOpError: An op is not registered.
        """
        names = set()
        for layer in self.layers:
            if layer.name in names:
                raise GraphError(f"layer name '{layer.name}' is used twice")
            names.add(layer.name)
        input_names = {t.name for t in self.inputs}
        for layer in self.layers:
            layer.op  # noqa: B018 - raises UnsupportedOpError for unknown ops
            for i, t in enumerate(layer.inputs):
                if t is not None and self.tensors.get(t.name) is not t:
                    raise GraphError(f"layer '{layer.name}' ({layer.op_type}): input {i} "
                                     f"'{t.name}' is not defined in the network")
                if (t is not None and t.producer is None and not t.is_constant
                        and t.name not in input_names):
                    raise GraphError(f"layer '{layer.name}' ({layer.op_type}): input {i} "
                                     f"'{t.name}' is neither an input, a constant nor produced "
                                     f"by a layer")
        for t in self.outputs:
            if (self.tensors.get(t.name) is not t
                    or (t.producer is None and not t.is_constant and t.name not in input_names)):
                raise GraphError(f"network output '{t.name}' is not produced by any layer")
        if not self.outputs:
            raise GraphError(f"network '{self.name}' has no outputs")
        self.toposort()

    # -- inference --------------------------------------------------------------------------

    def infer_layer(self, layer: Layer, known: dict[str, np.ndarray] | None = None) -> None:
        """Infer ``layer``'s output dtypes/shapes from its inputs (in place)."""
        descs = [None if t is None else self._desc(t, known) for t in layer.inputs]
        op = layer.op
        try:
            outs = op.infer(layer, descs)
        except DistRtError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
            raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): shape inference failed "
                             f"for inputs {[t and format_shape(t.shape) for t in layer.inputs]}"
                             f": {exc}") from exc
        if len(outs) < len(layer.outputs):
            outs = list(outs) + [TensorDesc(None, None)] * (len(layer.outputs) - len(outs))
        for tensor, desc in zip(layer.outputs, outs, strict=False):
            tensor.kind = desc.kind
            if desc.dtype is not None:
                tensor.dtype = np.dtype(desc.dtype)
            if desc.shape is not None:
                tensor.shape = tuple(desc.shape)
            if known is not None and desc.kind == "tensor":
                value = desc.value
                if value is None and op.deterministic and all(
                        d is None or (d.value is not None and d.kind == "tensor")
                        for d in descs) and descs:
                    value = self._try_fold(layer, descs)
                if value is not None:
                    known[tensor.name] = value
                    if tensor.shape is None or not all(isinstance(d, int) for d in tensor.shape):
                        tensor.shape = tuple(int(d) for d in np.shape(value))

    def _try_fold(self, layer: Layer, descs: list[TensorDesc | None]) -> np.ndarray | None:
        if len(layer.outputs) != 1:
            return None
        arrays = [None if d is None else d.value for d in descs]
        if any(a is not None and np.size(a) > _MAX_FOLD_ELEMENTS for a in arrays):
            return None
        shape = layer.outputs[0].shape  # small inputs can make a huge output (ConstantOfShape)
        if shape is not None and int(np.prod([d for d in shape if isinstance(d, int)],
                                              dtype=object)) > _MAX_FOLD_ELEMENTS:
            return None
        try:
            out = layer.op.run(layer, arrays, _op.RunContext())
        except DistRtError:
            return None
        value = np.asarray(out[0])
        return value if value.size <= _MAX_FOLD_ELEMENTS else None

    def _desc(self, tensor: Tensor, known: dict[str, np.ndarray] | None) -> TensorDesc:
        desc = tensor.desc()
        if known is not None and desc.value is None and tensor.name in known:
            return TensorDesc(desc.dtype, desc.shape, known[tensor.name], desc.kind)
        return desc

    def infer_shapes(self) -> dict[str, np.ndarray]:
        """Infer every layer's outputs in topological order.

        Returns:
            Values known at build time (shape arithmetic, small folded constants) by tensor
            name; the fold pass turns them into constants.
        """
        self.toposort()
        known: dict[str, np.ndarray] = {}
        for layer in self.layers:
            self.infer_layer(layer, known)
        return known

    # -- printing ---------------------------------------------------------------------------

    def __str__(self) -> str:
        def tdesc(t: Tensor | None) -> str:
            if t is None:
                return "-"
            dt = "?" if t.dtype is None else dtypes.name_of(t.dtype)
            kind = "const " if t.is_constant else ""
            return f"{kind}{t.name}: {dt}{format_shape(t.shape)}"

        lines = [f"Network '{self.name}' (opset {self.opset}, {len(self.layers)} layers, "
                 f"{len(self.constants)} constants, {self.weight_bytes() / 2**20:.2f} MiB weights)"]
        lines += [f"  input  {tdesc(t)}" for t in self.inputs]
        for layer in self.layers:
            attrs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(layer.attributes.items()))
            ranks = f" x{layer.nb_ranks} ranks" if layer.nb_ranks > 1 else ""
            ins = ", ".join(tdesc(t) for t in layer.inputs)
            outs = ", ".join(tdesc(t) for t in layer.outputs)
            lines.append(f"  [{layer.op_type}{ranks}] {layer.name}({ins}) -> {outs}"
                         + (f"  {{{attrs}}}" if attrs else ""))
        lines += [f"  output {tdesc(t)}" for t in self.outputs]
        return "\n".join(lines)


#: Immutable values that copy() shares rather than deep-copies (dims, names, dtypes).
_ATOMS = (str, int, float, bool, type(None), np.dtype)


def _copied(value: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(value, memo)``, minus the call for atoms and tuples of atoms."""
    if isinstance(value, _ATOMS) or (type(value) is tuple
                                     and all(isinstance(v, _ATOMS) for v in value)):
        return value
    return copy.deepcopy(value, memo)


@functools.cache
def _slots(cls: type) -> tuple[str, ...]:
    """Every ``__slots__`` name of ``cls`` and its bases."""
    names = []
    for base in cls.__mro__:
        slots = base.__dict__.get("__slots__", ())
        slots = [slots] if isinstance(slots, str) else slots
        names += [n for n in slots if n not in ("__dict__", "__weakref__")]
    return tuple(names)


def _shell(obj: Any, memo: dict[int, Any]) -> Any:
    """An empty instance of ``obj``'s class, recorded in ``memo`` as its copy (see copy)."""
    new = object.__new__(type(obj))
    memo[id(obj)] = new
    return new


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array{value.shape}" if value.size > 8 else repr(value.tolist())
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

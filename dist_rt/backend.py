"""The ONNX backend interface (``onnx.backend.base.Backend``) on top of dist_rt.

``prepare(model, device)`` imports the model (``dist_rt.parse_onnx``), builds an engine
(``Builder(BuilderConfig(device=...)).build``) and returns a :class:`DistRtBackendRep`
whose ``run(inputs)`` executes it; this is what ``onnx.backend.test.BackendTest`` drives::

    import dist_rt.backend as backend
    outputs = backend.run_model(model, [x])          # tuple of NumPy arrays
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from dist_rt import dtypes
from dist_rt.builder import Builder, BuilderConfig
from dist_rt.errors import DistRtError, InputError
from dist_rt.network import Network
from dist_rt.onnx.importer import parse_onnx
from dist_rt.runtime.backends import get_backend

_DEVICES = {DeviceType.CPU: "cpu", DeviceType.CUDA: "cuda"}


def _device_name(device: str) -> str:
    try:
        return _DEVICES[Device(device).type]
    except (KeyError, ValueError, AttributeError) as exc:
        raise InputError(f"device {device!r} is not supported; use 'CPU' or 'CUDA'") from exc


class DistRtBackendRep(BackendRep):
    """A prepared model: the engine plus its bindings.

    Attributes:
        network: The imported network.
        engine: The built engine.
    """

    def __init__(self, network: Network, engine: Any):
        self.network = network
        self.engine = engine
        self.input_names = [t.name for t in network.inputs]
        self.output_names = [t.name for t in network.outputs]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Execute with ``inputs`` (a list in graph-input order, a dict, or one array).

        Returns:
            The outputs in graph-output order, as a namedtuple that is also indexable by
            output name.

        Raises:
            InputError: Missing, extra or mismatched inputs.
        """
        feeds = self._feeds(inputs)
        with self.engine.create_execution_context() as ctx:
            results = ctx.execute(feeds)
        values = [_as_output(results[name]) for name in self.output_names]
        return namedtupledict("Outputs", self.output_names)(*values)

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            return {str(k): _as_array(v) for k, v in inputs.items()}
        if isinstance(inputs, np.ndarray) or np.isscalar(inputs):
            inputs = [inputs]
        inputs = list(inputs)
        if len(inputs) > len(self.input_names):
            raise InputError(f"got {len(inputs)} inputs, the model has "
                             f"{len(self.input_names)}: {self.input_names}")
        return {name: _as_array(v) for name, v in zip(self.input_names, inputs, strict=False)}


def _as_output(value: Any) -> Any:
    """Host NumPy; sequences stay lists of arrays, an empty optional stays None."""
    if value is None or isinstance(value, (list, tuple)):
        return None if value is None else [_as_output(v) for v in value]
    return np.asarray(value)


def _as_array(value: Any) -> Any:
    if value is None or isinstance(value, (list, tuple)):  # an optional, a sequence
        return None if value is None else [_as_array(v) for v in value]
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    return np.asarray(value)


class DistRtBackend(Backend):
    """dist_rt as an ONNX backend (``onnx.backend.base.Backend``)."""

    @classmethod
    def prepare(cls, model: ModelProto | str | bytes, device: str = "CPU",
                **kwargs: Any) -> DistRtBackendRep:
        """Import ``model`` and build an engine for ``device``.

        Args:
            model: A ``ModelProto``, a path or serialized bytes.
            device: ``"CPU"`` or ``"CUDA"`` (``"CUDA:0"`` accepted).
            **kwargs: ``precision`` and ``optimization_level`` go to the ``BuilderConfig``;
                ``fold_constants`` to the importer; others are ignored (the test runner
                passes tolerances).

        Returns:
            The prepared model.

        Raises:
            DistRtError: Import or build failures (``UnsupportedOpError``, ``ParseError``...).
        """
        dev = _device_name(device)
        network = parse_onnx(model, fold_constants=kwargs.get("fold_constants", True))
        config = BuilderConfig(device=dev, precision=kwargs.get("precision", "fp32"),
                               optimization_level=kwargs.get("optimization_level", 2))
        return DistRtBackendRep(network, Builder(config).build(network))

    @classmethod
    def run_model(cls, model: ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[Any, ...]:
        """``prepare(model, device).run(inputs)``."""
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[Any, ...]:
        """Run one node on ``inputs`` (given in the node's input order).

        Args:
            node: The node.
            inputs: Arrays for the node's non-empty inputs, in order.
            device: ``"CPU"`` or ``"CUDA"``.
            outputs_info: Optional (dtype, shape) of each output; else ONNX infers them.
            **kwargs: ``opset_version`` (default: the newest onnx knows) and
                :meth:`prepare`'s keywords.

        Returns:
            The node's outputs.
        """
        arrays = [_as_array(v) for v in (inputs.values() if isinstance(inputs, Mapping)
                                         else inputs)]
        names = [n for n in node.input if n]
        if len(arrays) != len(names):
            raise InputError(f"node '{node.name or node.op_type}' ({node.op_type}) has "
                             f"{len(names)} inputs, got {len(arrays)} arrays")
        graph_inputs = [helper.make_tensor_value_info(n, dtypes.to_onnx(a.dtype), a.shape)
                        for n, a in zip(names, arrays, strict=True)]
        out_names = [n for n in node.output if n]
        if outputs_info is not None:
            graph_outputs = [helper.make_tensor_value_info(n, dtypes.to_onnx(dt), shape)
                             for n, (dt, shape) in zip(out_names, outputs_info, strict=False)]
        else:
            graph_outputs = [onnx.ValueInfoProto(name=n) for n in out_names]
        opset = int(kwargs.pop("opset_version", onnx.defs.onnx_opset_version()))
        graph = helper.make_graph([node], f"{node.op_type}_node", graph_inputs, graph_outputs)
        imports = [helper.make_opsetid("", opset)]
        if node.domain and node.domain != "ai.onnx":
            imports.append(helper.make_opsetid(node.domain, 1))
        model = helper.make_model(graph, opset_imports=imports)
        if outputs_info is None:
            # Graph outputs need a type to pass onnx.checker; ONNX's inference supplies it.
            try:
                model = onnx.shape_inference.infer_shapes(model)
            except (onnx.shape_inference.InferenceError, RuntimeError):
                pass  # the importer's checker then reports what is wrong
        return cls.prepare(model, device, **kwargs).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """True for ``"CPU"``; for ``"CUDA"`` when the CUDA runtime backend can start."""
        try:
            dev = _device_name(device)
        except InputError:
            return False
        if dev == "cpu":
            return True
        try:
            get_backend("cuda")
        except DistRtError:
            return False
        return True


prepare = DistRtBackend.prepare
run_model = DistRtBackend.run_model
run_node = DistRtBackend.run_node
supports_device = DistRtBackend.supports_device

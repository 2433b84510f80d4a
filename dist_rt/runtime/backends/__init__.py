"""Backends: where layers run. One module per backend, loaded by name on first use.

A backend module ``dist_rt/runtime/backends/<name>.py`` defines at module level:

* ``name`` (str), ``xp`` (the array module: ``numpy`` or ``cupy``)
* ``to_device(np_array)`` / ``to_host(array) -> np.ndarray``
* ``run_layer(layer, inputs, rt) -> list`` (usually ``layer.op.run``; a backend may route hot
  ops to fused kernels)
* optional: ``is_available() -> bool``, ``device_arch() -> str``, ``synchronize()``,
  ``make_run_context(**kw) -> RunContext`` (e.g. to attach a stream),
  ``linear_weights(network)`` with ``store_transposed(array)`` (the constants kept
  transposed on the device, handed out as views of the same values and shape: see
  ``Backend.constants_to_device``), ``prefetch_targets(network, constants)``
  (what each layer warms in the cache for the next: ``RunContext.l2_prefetch``).

Only the CUDA backend imports ``cupy`` (STYLE.md rule 6); asking for it without CuPy raises
``DeviceError`` with the fix, never ``ImportError``.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

from dist_rt.errors import DeviceError
from dist_rt.ops import RunContext

_LOADED: dict[str, Backend] = {}


class Backend:
    """A backend module seen through one interface, with defaults for the optional parts.

    Args:
        module: The backend module.
    """

    def __init__(self, module: types.ModuleType):
        self.module = module
        self.name: str = module.name
        self.xp = module.xp
        self.to_device = module.to_device
        self.to_host = module.to_host
        self.run_layer = module.run_layer

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""
        fn = getattr(self.module, "synchronize", None)
        if fn is not None:
            fn()

    def constants_to_device(self, network: Any, names: Any = None) -> dict[str, Any]:
        """Device copies of ``network``'s constants (only ``names`` when given).

        The :meth:`transposed_constants` among them go through the module's
        ``store_transposed(array)``: the CUDA backend keeps MatMul weights (N, K) for its GEMV
        and returns the (K, N) view, the same values in the same shape.
        """
        transposed = self.transposed_constants(network)
        wanted = None if names is None else set(names)
        out = {}
        for t in network.constants:
            if wanted is not None and t.name not in wanted:
                continue
            array = self.to_device(t.weights.numpy())
            out[t.name] = self.module.store_transposed(array) if t.name in transposed else array
        return out

    def transposed_constants(self, network: Any) -> set[str]:
        """Names of the constants :meth:`constants_to_device` stores transposed."""
        fn = getattr(self.module, "linear_weights", None)
        return set(fn(network)) if fn is not None else set()

    def prefetch_targets(self, network: Any, constants: dict[str, Any]) -> dict:
        """Layer name -> what that layer prefetches for the next one (empty by default)."""
        fn = getattr(self.module, "prefetch_targets", None)
        return fn(network, constants) if fn is not None else {}

    def device_arch(self) -> str:
        """The device architecture string stored in plan files."""
        fn = getattr(self.module, "device_arch", None)
        return fn() if fn is not None else self.name

    def make_run_context(self, **kw: Any) -> RunContext:
        """The RunContext layers see (xp, backend name, communicator, rank...)."""
        fn = getattr(self.module, "make_run_context", None)
        if fn is not None:
            return fn(**kw)
        return RunContext(xp=self.xp, backend=self.name, **kw)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``"cpu"`` or ``"cuda"``).

    Raises:
        DeviceError: Unknown backend, or its dependencies (CuPy, a GPU) are missing.
    """
    if name in _LOADED:
        return _LOADED[name]
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device {name!r}; expected 'cpu' or 'cuda'")
    try:
        module = importlib.import_module(f"dist_rt.runtime.backends.{name}")
    except ImportError as exc:
        raise DeviceError(f"device {name!r} is not available: {exc}. For CUDA install CuPy "
                          f"(pip install -e \".[cuda12]\") or use --device cpu") from None
    available = getattr(module, "is_available", None)
    if available is not None and not available():
        raise DeviceError(f"device {name!r} is not available: no usable GPU found "
                          f"(use --device cpu)")
    _LOADED[name] = Backend(module)
    return _LOADED[name]


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to ``"cuda"`` when that backend works, else ``"cpu"``.

    Raises:
        DeviceError: ``device`` is ``"cuda"`` and CUDA is not available.
    """
    if device != "auto":
        get_backend(device)
        return device
    try:
        get_backend("cuda")
    except DeviceError:
        return "cpu"
    return "cuda"

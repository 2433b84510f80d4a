"""The runtime: ``ExecutionContext`` runs an Engine through a backend (NumPy or CuPy)."""

from dist_rt.runtime.context import ExecutionContext

__all__ = ["ExecutionContext"]

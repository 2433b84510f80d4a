"""Communicators: the eight collectives over MPI (host arrays) and NCCL (device arrays).

``create_communicator(backend)`` builds one; ``MpiCommunicator`` and ``NcclCommunicator``
load lazily (``collectives.mpi``, ``collectives.nccl``) so importing this package needs
neither mpi4py nor CuPy.
"""

from collectives.communicator import COLLECTIVES, REDUCE_OPS, Communicator, LocalCommunicator
from collectives.factory import BACKENDS, create_communicator

__all__ = ["BACKENDS", "COLLECTIVES", "REDUCE_OPS", "Communicator", "LocalCommunicator",
           "create_communicator"]

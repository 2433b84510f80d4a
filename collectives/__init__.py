"""Communicators: the eight collectives over MPI (host arrays) and NCCL (device arrays)."""

from collectives.communicator import COLLECTIVES, REDUCE_OPS, Communicator, LocalCommunicator

__all__ = ["COLLECTIVES", "REDUCE_OPS", "Communicator", "LocalCommunicator"]

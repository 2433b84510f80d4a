"""Process launch: rank discovery, NCCL bootstrap, device binding, a single-node spawner.

``launch.discover()`` reads the launcher's variables (Open MPI, MPICH/PMI, Slurm, torchrun);
``launch.bootstrap`` shares the NCCL unique id over MPI or a TCP store
(``launch.store``); ``python -m launch -n 4 CMD...`` starts ranks without MPI.
"""

from launch.discover import RankInfo, discover

__all__ = ["RankInfo", "discover"]

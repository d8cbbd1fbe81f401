"""Data-parallel training over MPI (mpi4py): `DistributedOptimizer` averages every rank's
gradients in a fixed order and steps a ferroptim optimizer on the average, its state sharded
across the ranks (ZeRO stage 1) or replicated.

Install with `pip install ferroptim[mpi]` (mpi4py); `pip install mpich` adds an MPI runtime for
one machine, and a cluster's own MPI serves when mpi4py is built against it
(`pip install --no-binary mpi4py mpi4py`). Run with `mpiexec -n 4 python -m mpi4py train.py`.
"""

from ferroptim.distributed.optimizer import DEFAULT_BUCKET_SIZE, DistributedOptimizer

__all__ = ["DEFAULT_BUCKET_SIZE", "DistributedOptimizer"]

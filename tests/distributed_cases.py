"""The model, the gradients and the single-process reference of the distributed tests, shared by
the ranks (distributed_worker.py) and the test process (test_distributed.py), which needs no MPI.

Every rank's gradients are drawn from a generator seeded by (step, rank), so any process can
recompute every rank's gradients and the average the ranks agree on: the reference steps on
exactly `functools.reduce(np.add, [g_0, ..., g_{N-1}]) / N`.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List

import numpy as np

import ferroptim as fo
from ferroptim._bench.distributed import default_mpiexec

MPIEXEC = default_mpiexec()


def model(tensors: str = "mixed") -> Dict[str, np.ndarray]:
    """A model with float32 and float64 variables, C and Fortran order, a view and a scalar
    (`mixed`), or two small tensors (`few`: fewer tensors than ranks)."""
    rng = np.random.default_rng(0)
    if tensors == "few":
        return {
            "w": rng.standard_normal((7, 3)).astype(np.float32),
            "b": rng.standard_normal(3).astype(np.float32),
        }
    wide = rng.standard_normal((6, 10)).astype(np.float32)
    return {
        "dense/kernel": rng.standard_normal((37, 5)).astype(np.float32),
        "dense/bias": rng.standard_normal(5).astype(np.float32),
        "wide": rng.standard_normal((3, 4)).astype(np.float64),
        "fortran": np.asfortranarray(rng.standard_normal((6, 7)).astype(np.float32)),
        "view": wide[:, ::2],
        "scale": np.array(1.5, np.float64),
    }


def gradients(params: Dict[str, np.ndarray], step: int, rank: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 * step + rank)
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


def averaged(params: Dict[str, np.ndarray], step: int, size: int) -> Dict[str, np.ndarray]:
    every = [gradients(params, step, r) for r in range(size)]
    return {k: functools.reduce(np.add, [g[k] for g in every]) / size for k in params}


def make(name: str, kwargs: Dict[str, Any]) -> Any:
    if name == "LossScaleOptimizer":
        return fo.optimizers.LossScaleOptimizer(fo.optimizers.Adam(**kwargs))
    if name == "MultiOptimizer":
        return fo.optimizers.MultiOptimizer(
            fo.optimizers.OptimizerMap(
                fo.optimizers.Adam(**kwargs), {"dense/bias": fo.optimizers.SGD(momentum=0.9)}
            )
        )
    return getattr(fo.optimizers, name)(**kwargs)


def bits(params: Dict[str, np.ndarray]) -> List[str]:
    return [np.ascontiguousarray(v).tobytes().hex() for v in params.values()]

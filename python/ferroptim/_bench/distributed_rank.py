"""The rank side of the distributed benchmark (`distributed`): what each rank of one launch,
`mpiexec -n N python -m mpi4py -m ferroptim._bench.distributed_rank JOB`, runs and measures.

For each optimizer and case of the job, and each mode (`allreduce`: `shard_state=False`;
`zero1`: `shard_state=True`), every rank builds the case's parameters and its own gradients
(`make_arrays` seeded by the rank), wraps a fresh optimizer in a `DistributedOptimizer`, takes
rank 0's parameters (`broadcast_variables`), steps once to warm up, then times `steps` steps,
each between two `comm.Barrier()`. Thin wrappers installed on the instance (the library's code
is left as it is) add up the time a step spends in the parts a cost model needs:

- exchange: `Exchange.average`, the reduce-scatter (an `Alltoallv` per bucket, then this rank's
  N pieces added in rank order);
- rule: the wrapped optimizer's `apply` (this rank's 1/N with zero1, the whole model with
  allreduce);
- gather: `Exchange.gather`, the `Allgatherv` per bucket (of the parameters with zero1, of the
  averaged gradient with allreduce).

Memory, per rank: the bytes of the optimizer's state (`opt.variables`), of the distributed
optimizer's own buffers (this rank's range of the averaged gradient; with allreduce also the
whole averaged gradient; the exchange's send and receive buffers, one bucket each), and the
peak of what one more step allocates and frees (tracemalloc, which NumPy reports its arrays
to).

Rank 0 prints one line of JSON: per result, the slowest rank's seconds of each timed step and
part, and each rank's bytes.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import tracemalloc
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

import ferroptim
from ferroptim._bench.cases import make_arrays, parse_case
from ferroptim._bench.registry import OPTIMIZERS, BenchOptimizer
from ferroptim._bench.runner import settle_allocator
from ferroptim.distributed import DistributedOptimizer

# The modes, by `shard_state`.
MODES = {"allreduce": False, "zero1": True}
PARTS = ("exchange", "rule", "gather")


class _Clock:
    """Seconds a step spends in each part, added up by the wrappers `install` puts on one
    distributed optimizer's instance."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(PARTS, 0.0)

    def reset(self) -> None:
        self.spent = dict.fromkeys(PARTS, 0.0)

    def wrap(self, part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - start

        return timed

    def install(self, opt: Any) -> None:
        """Time the parts of `opt`'s steps (built) through instance attributes that shadow
        its exchange's and its wrapped optimizer's methods."""
        exchange = opt._exchange
        for part, owner, name in [
            ("exchange", exchange, "average"),
            ("gather", exchange, "gather"),
            ("rule", opt.optimizer, "apply"),
        ]:
            setattr(owner, name, self.wrap(part, getattr(owner, name)))


def _nbytes(arrays: Iterable[Any]) -> int:
    return int(sum(np.asarray(a).nbytes for a in arrays))


def _step_temporaries(opt: Any, grads: Any, params: Any) -> int:
    """The most bytes one more step of `opt` holds at once beyond what it started with."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        opt.apply(grads, params)
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def measure(
    comm: Any,
    spec: BenchOptimizer,
    params: Any,
    grads: Any,
    shard_state: bool,
    steps: int,
    bucket_size: int,
) -> Optional[Dict[str, Any]]:
    """Time and weigh one mode on one case (collective).

    Args:
        comm: the communicator of the ranks.
        spec: the optimizer, built fresh.
        params: this rank's parameters (a list, or a dict by name), overwritten with rank 0's.
        grads: this rank's gradients, of the same structure.
        shard_state: the mode.
        steps: timed steps.
        bucket_size: the distributed optimizer's `bucket_size`.

    Returns:
        On rank 0: "step", "exchange", "rule", "gather" (per timed step, the slowest rank's
        seconds), "state", "buffers", "temporaries" (per rank, bytes); None on the others.
    """
    optimizer = getattr(ferroptim.optimizers, spec.keras_name)(**spec.kwargs)
    opt = DistributedOptimizer(optimizer, shard_state=shard_state, bucket_size=bucket_size)
    opt.broadcast_variables(params)
    opt.build(params)
    clock = _Clock()
    clock.install(opt)
    opt.apply(grads, params)
    rows: List[List[float]] = []
    # As `timing` does: a collection of one step's garbage must not land in another's time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(steps):
            comm.Barrier()
            clock.reset()
            start = time.perf_counter()
            opt.apply(grads, params)
            elapsed = time.perf_counter() - start
            rows.append([elapsed, *clock.spent.values()])
            comm.Barrier()
    finally:
        if collecting:
            gc.enable()
    buffers = _nbytes(opt._averaged.values()) + _nbytes(getattr(opt, "_full", []))
    buffers += opt._exchange.buffer_bytes()
    memory = [_nbytes(opt.variables), buffers, _step_temporaries(opt, grads, params)]
    everything = comm.gather((rows, memory), root=0)
    del opt
    gc.collect()
    if everything is None:
        return None
    # Per step and part, the slowest rank: a step ends for the job when its last rank is done.
    slowest = np.max(np.array([ranks_rows for ranks_rows, _ in everything]), axis=0)
    out: Dict[str, Any] = {name: slowest[:, k].tolist() for k, name in enumerate(("step",) + PARTS)}
    for k, name in enumerate(("state", "buffers", "temporaries")):
        out[name] = [int(weights[k]) for _, weights in everything]
    return out


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str]) -> int:
    """Run the job `argv[0]` (JSON: "optimizers", registry keys; "sizes", `--sizes` entries;
    "steps"; "bucket_size"; "seed") on every rank of `MPI.COMM_WORLD`; rank 0 prints the
    results as one line of JSON.

    Args:
        argv: the arguments after the module's name.
    """
    import mpi4py
    from mpi4py import MPI

    job = json.loads(argv[0])
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    # The ranks share the machine's cores: one kernel thread per core in all.
    threads = max(1, (os.cpu_count() or 1) // size)
    ferroptim.set_num_threads(threads)
    # A training process's allocator, as the main benchmark's: a step's temporaries (a
    # non-contiguous gradient's copy, the rule's own) would otherwise cost a page fault per
    # 4 KiB each time.
    settle_allocator()
    results = []
    for name in job["optimizers"]:
        spec = OPTIMIZERS[name]
        for text in job["sizes"]:
            case = parse_case(text)
            params, grads = make_arrays(case, job["seed"] + rank)
            if case.names is not None:
                params_in: Any = dict(zip(case.names, params))
                grads_in: Any = dict(zip(case.names, grads))
            else:
                params_in, grads_in = params, grads
            for mode, shard_state in MODES.items():
                measured = measure(
                    comm,
                    spec,
                    params_in,
                    grads_in,
                    shard_state,
                    job["steps"],
                    job["bucket_size"],
                )
                if measured is not None:
                    _log(
                        f"    {size} rank(s), {name} {case.name} {mode}: "
                        f"{np.median(measured['step']) * 1e3:,.1f} ms per step"
                    )
                    results.append({"optimizer": name, "case": case.name, "mode": mode, **measured})
            del params, grads, params_in, grads_in
            gc.collect()
    if rank == 0:
        library = MPI.Get_library_version().strip().splitlines()[0]
        launch = {"ranks": size, "threads_per_rank": threads, "mpi4py": mpi4py.__version__}
        launch["mpi_library"] = " ".join(library.split())
        print(json.dumps({"launch": launch, "results": results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

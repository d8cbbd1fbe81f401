"""The rank side of test_distributed.py: run under `mpiexec -n N python -m mpi4py`, one scenario
per launch; rank 0 prints one line of JSON with what the test asserts (the model, gradients and
single-process reference are in distributed_cases.py).
"""

from __future__ import annotations

import json
import os
import sys
import tracemalloc
from typing import Any, Dict, List

import numpy as np
from mpi4py import MPI

import ferroptim as fo
from distributed_cases import averaged, bits, gradients, make, model
from ferroptim.distributed import DistributedOptimizer

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()


def state_elements(opt: Any) -> int:
    return int(sum(np.size(v) for v in opt.variables if np.ndim(v) > 0))


def train(
    cases: List[List[Any]], shard: bool, steps: int, bucket: int, tensors: str, form: str = "dict"
) -> Any:
    """Each case `[name, kwargs]`: this run's parameters against the single-process
    reference, per rank: bitwise equal, the largest difference, the state held. `form`: the
    variables and gradients as a dict, a list, or (gradient, variable) pairs."""
    out = []
    for name, kwargs in cases:
        params = model(tensors)
        opt = DistributedOptimizer(make(name, kwargs), shard_state=shard, bucket_size=bucket)
        error = None
        try:
            for step in range(steps):
                grads = gradients(params, step, RANK)
                if form == "dict":
                    opt.apply(grads, params)
                elif form == "list":
                    opt.apply(list(grads.values()), list(params.values()))
                else:
                    opt.apply_gradients(zip(grads.values(), params.values()))
        except Exception as caught:  # reported, so one case does not hide the others
            error = f"{type(caught).__name__}: {caught}"
        reference = model(tensors)
        single = make(name, kwargs)
        for step in range(steps):
            single.apply(averaged(reference, step, SIZE), reference)
        worst = max(
            float(np.max(np.abs(params[k].astype(np.float64) - reference[k]), initial=0.0))
            for k in params
        )
        rows = COMM.gather(
            {
                "bitwise": bits(params) == bits(reference),
                "worst": worst,
                "state": state_elements(opt),
                "single_state": state_elements(single),
                "error": error,
                "same_as_rank_0": None,
                "bits": bits(params),
            },
            root=0,
        )
        if RANK == 0:
            first = rows[0]["bits"]
            for row in rows:
                row["same_as_rank_0"] = row.pop("bits") == first
            out.append({"name": name, "kwargs": kwargs, "ranks": rows})
    return out


def checkpoint(path: str, phase: str, steps: int, more: int) -> Any:
    """`save`: train `steps` steps at this size and save. `resume`: load the file at this size
    and train `more` steps; report the parameters' bits."""
    params = model()
    opt = DistributedOptimizer(fo.optimizers.Adam(learning_rate=0.01, amsgrad=True, use_ema=True))
    if phase == "save":
        for step in range(steps):
            opt.apply(gradients(params, step, RANK), params)
        opt.save(path)
    else:
        opt.load_state(path, params)
        for step in range(steps, steps + more):
            opt.apply(gradients(params, step, RANK), params)
    return COMM.gather({"bits": bits(params), "iterations": opt.iterations}, root=0)


def swaps(steps: int) -> Any:
    """ScheduleFreeAdamW's evaluation point and an EMA's final values, against one process."""
    out = []
    for name, kwargs, action in [
        ("ScheduleFreeAdamW", {"learning_rate": 0.01}, "swap"),
        ("Adam", {"use_ema": True, "ema_momentum": 0.5}, "finalize"),
    ]:
        params, reference = model(), model()
        opt = DistributedOptimizer(make(name, kwargs))
        single = make(name, kwargs)
        for step in range(steps):
            opt.apply(gradients(params, step, RANK), params)
            single.apply(averaged(reference, step, SIZE), reference)
        if action == "swap":
            opt.swap_to_eval()
            single.swap_to_eval()
            evaluated = bits(params) == bits(reference)
            opt.swap_to_train()
            single.swap_to_train()
        else:
            opt.finalize_variable_values()
            single.finalize_variable_values(reference)
            evaluated = True
        out.append(COMM.gather([evaluated, bits(params) == bits(reference)], root=0))
    return out


def errors(kind: str) -> Any:
    """A bad gradient on rank 1 only: every rank must raise the same exception, and nothing
    change on any rank."""
    params = model()
    opt = DistributedOptimizer(fo.optimizers.Adam(use_ema=True))
    opt.apply(gradients(params, 0, RANK), params)
    before = bits(params), [np.array(v, copy=True).tobytes() for v in opt.variables]
    grads: Dict[str, Any] = gradients(params, 1, RANK)
    if RANK == 1 % SIZE:
        if kind == "shape":
            grads["dense/bias"] = np.zeros(6, np.float32)
        elif kind == "dtype":
            grads["wide"] = np.array(["x"] * 12).reshape(3, 4)
        elif kind == "none":
            grads["wide"] = None
        elif kind == "unknown":
            grads["nope"] = grads.pop("wide")
    raised = None
    try:
        if kind in ("single_pair", "key_pairs"):
            # The pairs API, wrong on rank 1 only.
            pairs: Any = list(zip(grads.values(), params.values()))
            if RANK == 1 % SIZE:
                pairs = pairs[0] if kind == "single_pair" else zip(grads, params)
            opt.apply_gradients(pairs)
        else:
            opt.apply(grads, params)
    except Exception as caught:
        raised = [type(caught).__name__, str(caught)]
    after = bits(params), [np.array(v, copy=True).tobytes() for v in opt.variables]
    rows = COMM.gather({"raised": raised, "unchanged": before == after}, root=0)
    return rows


def killed() -> Any:
    """Rank 1 dies between two steps; the others would wait in the next collective."""
    params = model()
    opt = DistributedOptimizer(fo.optimizers.SGD(momentum=0.9))
    opt.apply(gradients(params, 0, RANK), params)
    if RANK == 1:
        os._exit(3)
    opt.apply(gradients(params, 1, RANK), params)
    return "finished"


def raised_outside() -> Any:
    """Rank 1 raises between two steps (under `python -m mpi4py` the job aborts)."""
    params = model()
    opt = DistributedOptimizer(fo.optimizers.SGD())
    opt.apply(gradients(params, 0, RANK), params)
    if RANK == 1:
        raise RuntimeError("a failure outside the optimizer")
    opt.apply(gradients(params, 1, RANK), params)
    return "finished"


class _Recorder:
    """A communicator that forwards every call and records the bytes each rank's buffers of
    the bucketed collectives hold, and to how many ranks each `Alltoallv` sends."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.buffers: List[int] = []
        self.receivers: List[int] = []

    def _record(self, send: Any, received: Any) -> None:
        for spec in (send, received):
            count = sum(spec[1]) if isinstance(spec[1], list) else spec[1]
            self.buffers.append(int(count) * spec[-1].Get_size())

    def Alltoallv(self, send: Any, received: Any) -> None:  # noqa: N802 - MPI's name
        self._record(send, received)
        self.receivers.append(sum(1 for count in send[1] if count))
        self.comm.Alltoallv(send, received)

    def Allgatherv(self, send: Any, received: Any) -> None:  # noqa: N802 - MPI's name
        self._record(send, received)
        self.comm.Allgatherv(send, received)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.comm, name)


def buckets(bucket: int) -> Any:
    """A float32 model of 1.2 M elements in 64 KiB buckets (and the float64 scalar of
    `mixed`), Adam, both modes: per collective, the bytes of each buffer, the ranks an
    `Alltoallv` sends to, the exchange's buffers, and the most a step allocates."""
    out = {}
    for shard in (True, False):
        rng = np.random.default_rng(0)
        params = {f"w{i}": rng.standard_normal((300, 1000)).astype(np.float32) for i in range(4)}
        params["scale"] = np.array(1.5, np.float64)
        opt = DistributedOptimizer(fo.optimizers.Adam(), shard_state=shard, bucket_size=bucket)
        opt.apply(gradients(params, 0, RANK), params)
        recorder = _Recorder(opt._exchange.comm)
        opt._exchange.comm = recorder
        grads = gradients(params, 1, RANK)
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        opt.apply(grads, params)
        peak = tracemalloc.get_traced_memory()[1] - start
        tracemalloc.stop()
        rows = COMM.gather(
            {
                "largest_buffer": max(recorder.buffers),
                "receivers": sorted(set(recorder.receivers)),
                "collectives": len(recorder.buffers) // 2,
                "buffer_bytes": opt._exchange.buffer_bytes(),
                "temporaries": peak,
            },
            root=0,
        )
        out["zero1" if shard else "allreduce"] = rows
    return out


def main() -> None:
    scenario, arguments = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    threads = arguments.pop("threads", None)
    if threads is not None:
        fo.set_num_threads(threads)
    result = {
        "train": train,
        "checkpoint": checkpoint,
        "errors": errors,
        "swaps": swaps,
        "killed": killed,
        "raised_outside": raised_outside,
        "buckets": buckets,
    }[scenario](**arguments)
    if RANK == 0:
        print(json.dumps({"size": SIZE, "result": result}))


if __name__ == "__main__":
    main()

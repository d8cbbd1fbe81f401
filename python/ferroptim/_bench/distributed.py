"""The distributed benchmark (`python -m ferroptim bench --distributed`): data-parallel steps of
`ferroptim.distributed.DistributedOptimizer` at several rank counts, allreduce against ZeRO-1.

For each rank count N of `--ranks` this process launches `mpiexec -n N python -m mpi4py -m
ferroptim._bench.distributed_rank JOB` (the rank side, `distributed_rank`), which times, for
each optimizer and case, both modes:

- allreduce (`shard_state=False`): the averaged gradient is reduce-scattered, then allgathered,
  and every rank steps the whole model with the whole optimizer state;
- zero1 (`shard_state=True`, ZeRO stage 1): each rank steps its 1/N of the elements, with 1/N of
  the state, and the parameters are allgathered.

A step's time is the slowest rank's (the job waits for it), the median over the timed steps;
so are its parts (the exchange, the wrapped optimizer's step, the gather), which calibrate the
cost model of `benches/distributed_model.py`. Memory is per rank, the most over the ranks: the
optimizer's state, the distributed optimizer's own buffers, and the temporaries of one step.
The ranks' kernels share the machine's cores (`max(1, cores // N)` threads each); more ranks
than cores oversubscribe them, which the report says.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

from ferroptim._bench.cases import Case
from ferroptim._bench.report import NA, format_speedup, markdown_table, ratio
from ferroptim._bench.results import case_json, settings_json
from ferroptim._bench.runner import environment, log
from ferroptim._bench.settings import DistributedRun, Settings

RANK_MODULE = "ferroptim._bench.distributed_rank"
MODES = ("allreduce", "zero1")
PART_NAMES = ("exchange", "rule", "gather")

DISTRIBUTED_COLUMNS = (
    "optimizer",
    "ranks",
    "case",
    "mode",
    "step ms",
    "exchange ms",
    "optimizer ms",
    "gather ms",
    "state MB per rank",
    "buffers MB per rank",
    "temporaries MB",
    "step / allreduce",
    "memory / allreduce",
)

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def default_mpiexec() -> str:
    """The MPI launcher: the one installed beside this Python (the `mpich` wheel's), else the
    one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else "mpiexec"


def parse_ranks(text: str) -> Tuple[int, ...]:
    """A `--ranks` list (a ValueError names the option).

    Args:
        text: comma-separated positive integers, e.g. "1,2,4".
    """
    try:
        ranks = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        ranks = ()
    if not ranks or min(ranks) < 1:
        raise ValueError(f"--ranks: expected positive integers, e.g. 1,2,4, got {text!r}")
    return ranks


def parse_bytes(text: str) -> int:
    """A `--bucket-size`: bytes, or KiB, MiB, GiB with the suffix K, M, G (a ValueError names
    the option).

    Args:
        text: e.g. "67108864" or "64M".
    """
    key = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = key[-1:] if key[-1:] in _UNITS else ""
    digits = key[: len(key) - len(unit)]
    if not digits.isdigit() or int(digits) * _UNITS[unit] < 8:
        raise ValueError(f"--bucket-size: expected at least 8 bytes, e.g. 64M, got {text!r}")
    return int(digits) * _UNITS[unit]


def format_bytes(count: int) -> str:
    """A bucket size as `--bucket-size` spells it in the largest whole unit ("64M", "256K").

    Args:
        count: bytes.
    """
    for unit in ("G", "M", "K"):
        if count % _UNITS[unit] == 0:
            return f"{count // _UNITS[unit]}{unit}"
    return str(count)


@dataclasses.dataclass
class DistributedResult:
    """One (optimizer, case, mode) at one rank count.

    Args:
        optimizer: registry key.
        case: the case.
        mode: "allreduce" or "zero1".
        ranks: the rank count.
        seconds: "step", "exchange", "rule", "gather" -> per timed step, the slowest rank's
            seconds.
        bytes: "state", "buffers", "temporaries" -> per rank, bytes.
    """

    optimizer: str
    case: Case
    mode: str
    ranks: int
    seconds: Dict[str, List[float]]
    bytes: Dict[str, List[int]]

    def median(self, part: str) -> float:
        """Median over the timed steps of the slowest rank's seconds in `part` ("step" or one
        of `PART_NAMES`).

        Args:
            part: the part.
        """
        return statistics.median(self.seconds[part])

    def most(self, kind: str) -> int:
        """The most bytes of `kind` ("state", "buffers", "temporaries") a rank holds.

        Args:
            kind: the kind.
        """
        return max(self.bytes[kind])

    @property
    def memory(self) -> int:
        """State and buffers of the rank that holds the most: what a step keeps between steps."""
        return max(s + b for s, b in zip(self.bytes["state"], self.bytes["buffers"]))

    def to_json(self) -> Dict[str, Any]:
        """The result as plain JSON values."""
        return {
            **case_json(self.optimizer, self.case),
            "mode": self.mode,
            "ranks": self.ranks,
            "median_s": {part: self.median(part) for part in self.seconds},
            "seconds": self.seconds,
            "bytes": self.bytes,
        }


@dataclasses.dataclass
class DistributedReport:
    """Everything one run of the distributed benchmark measured.

    Args:
        settings: what was asked (`settings.distributed` the launches).
        env: `runner.environment()` of the launching process.
        launches: per rank count, what its ranks reported of themselves ("ranks",
            "threads_per_rank", "mpi4py", "mpi_library").
        results: in the order of rank count, optimizer, case, mode.
    """

    settings: Settings
    env: Dict[str, Any]
    launches: List[Dict[str, Any]]
    results: List[DistributedResult]

    @property
    def run(self) -> DistributedRun:
        """The launches asked."""
        assert self.settings.distributed is not None
        return self.settings.distributed

    def find(self, optimizer: str, case: str, mode: str, ranks: int) -> Optional[DistributedResult]:
        """The result of (optimizer, case name, mode, rank count), or None.

        Args:
            optimizer, case, mode, ranks: what it measured.
        """
        return next(
            (
                r
                for r in self.results
                if (r.optimizer, r.case.name, r.mode, r.ranks) == (optimizer, case, mode, ranks)
            ),
            None,
        )

    def to_json(self) -> Dict[str, Any]:
        """The raw results as plain JSON values."""
        return {
            "environment": self.env,
            "settings": settings_json(self.settings),
            "launches": self.launches,
            "results": [result.to_json() for result in self.results],
        }


def launcher(run: DistributedRun) -> List[str]:
    """The launcher's command of `run` (the default one when it names none).

    Args:
        run: the launches.
    """
    return list(run.mpiexec) or [default_mpiexec()]


def check_launcher(run: DistributedRun) -> None:
    """Raise a RuntimeError saying what to install when mpi4py or the launcher is missing.

    Args:
        run: the launches.
    """
    if importlib.util.find_spec("mpi4py") is None:
        raise RuntimeError(
            "--distributed needs mpi4py and an MPI runtime: pip install 'ferroptim[mpi]' mpich"
        )
    program = launcher(run)[0]
    if shutil.which(program) is None:
        raise RuntimeError(
            f"--distributed: no MPI launcher {program!r}; pip install mpich, or name yours "
            "with --mpiexec"
        )


def launch(settings: Settings, ranks: int) -> Dict[str, Any]:
    """One `mpiexec -n ranks` run of every optimizer, case and mode (the ranks' progress and
    errors go to stderr): rank 0's JSON.

    Args:
        settings: the run's settings.
        ranks: the rank count.
    """
    import ferroptim

    assert settings.distributed is not None
    job = {
        "optimizers": settings.optimizers,
        "sizes": [case.name for case in settings.sizes],
        "steps": settings.repeats,
        "bucket_size": settings.distributed.bucket_size,
        "seed": settings.seed,
    }
    command = [*launcher(settings.distributed), "-n", str(ranks), sys.executable, "-m", "mpi4py"]
    command += ["-m", RANK_MODULE, json.dumps(job)]
    # The ranks import the ferroptim this process runs.
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(ferroptim.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"`{' '.join(command[:3])} ...` ended with status {done.returncode}; the ranks' "
            "errors are above"
        )
    out: Dict[str, Any] = json.loads(lines[-1])
    return out


def run(settings: Settings) -> DistributedReport:
    """Run the distributed benchmark (progress goes to stderr).

    Args:
        settings: what to measure; `settings.distributed` the launches.
    """
    if settings.distributed is None:
        raise ValueError("the distributed benchmark needs settings.distributed")
    check_launcher(settings.distributed)
    env = environment()
    cases = {case.name: case for case in settings.sizes}
    launches, results = [], []
    for ranks in settings.distributed.ranks:
        log(f"[distributed] {ranks} rank(s): {', '.join(cases)} ...")
        out = launch(settings, ranks)
        launches.append(out["launch"])
        for entry in out["results"]:
            results.append(
                DistributedResult(
                    entry["optimizer"],
                    cases[entry["case"]],
                    entry["mode"],
                    ranks,
                    {part: entry[part] for part in ("step",) + PART_NAMES},
                    {kind: entry[kind] for kind in ("state", "buffers", "temporaries")},
                )
            )
    return DistributedReport(settings, env, launches, results)


def _format_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 10 else f"{ms:,.1f}"


def _format_mb(count: int) -> str:
    mb = count / 1e6
    return f"{mb:.3f}" if mb < 1 else f"{mb:.2f}" if mb < 10 else f"{mb:,.1f}"


def distributed_rows(report: DistributedReport) -> List[List[str]]:
    """The table's cells, one row per result, columns as `DISTRIBUTED_COLUMNS`.

    Args:
        report: the run.
    """
    rows = []
    for r in report.results:
        base = report.find(r.optimizer, r.case.name, "allreduce", r.ranks)
        step = r.median("step")
        rows.append(
            [
                r.optimizer,
                str(r.ranks),
                r.case.name,
                r.mode,
                _format_ms(step),
                *(_format_ms(r.median(part)) for part in PART_NAMES),
                _format_mb(r.most("state")),
                _format_mb(r.most("buffers")),
                _format_mb(r.most("temporaries")),
                format_speedup(ratio(step, None if base is None else base.median("step"))),
                NA if base is None else format_speedup(ratio(float(r.memory), float(base.memory))),
            ]
        )
    return rows


def _environment_line(report: DistributedReport) -> str:
    env, settings, run = report.env, report.settings, report.run
    mpi = sorted(
        {f"{launch['mpi_library']}, mpi4py {launch['mpi4py']}" for launch in report.launches}
    )
    load = env["load_average"]
    load_text = (
        "load average unknown"
        if load is None
        else "load average " + " ".join(f"{value:.2f}" for value in load) + " at start"
    )
    cores = env["cores"] or 1
    crowded = [n for n in run.ranks if n > cores]
    return (
        f"ferroptim {env['ferroptim']}, SIMD level {env['simd_level']}, {cores} core(s) "
        f"({env['cpu']}); NumPy {env['numpy']}; Python {env['python']}; "
        f"{'; '.join(mpi) or 'MPI unknown'}; {load_text}. float32, bucket_size "
        f"{format_bytes(run.bucket_size)}, max(1, cores // ranks) ferroptim threads per rank"
        + (
            f"; {', '.join(map(str, crowded))} ranks oversubscribe the {cores} cores"
            if crowded
            else ""
        )
        + f". Every rank on this machine, over the MPI library's shared memory. The median "
        f"over {settings.repeats} timed steps (after one warm-up step) of the slowest rank's "
        "time, each step between two `comm.Barrier()`."
    )


def render_markdown(report: DistributedReport) -> str:
    """The Markdown report of a distributed run: measurements and ratios.

    Args:
        report: the run.
    """
    out = [
        "## ferroptim distributed benchmark",
        "",
        _environment_line(report),
        "",
        "`DistributedOptimizer(opt, shard_state=False)` (allreduce: every rank steps the whole "
        "model on the averaged gradient) and `shard_state=True` (zero1: each rank steps 1/N "
        "of the elements and the parameters are allgathered). exchange: the reduce-scatter of "
        "the gradients (an `Alltoallv` per bucket, then the N pieces of the rank's range "
        "added in rank order); optimizer: the wrapped optimizer's step; gather: the "
        "`Allgatherv` per bucket (of the averaged gradient with allreduce, of the parameters "
        "with zero1, and copying the rank's range of them out). state: the bytes of "
        "`opt.variables` on the rank that holds the most; buffers: the distributed "
        "optimizer's own arrays (the rank's range of the averaged gradient; with allreduce "
        "also the whole averaged gradient); temporaries: the most one step allocates at once "
        "beyond those (tracemalloc). MB = 10^6 bytes. step / allreduce and memory / "
        "allreduce: this mode's step time and state + buffers over allreduce's at the same "
        "ranks and case.",
        "",
        markdown_table(DISTRIBUTED_COLUMNS, distributed_rows(report), left=4),
    ]
    return "\n".join(out) + "\n"

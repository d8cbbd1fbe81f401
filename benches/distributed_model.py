"""The cost model of docs/distributed.md: a latency-bandwidth (alpha-beta) model of one step of
`ferroptim.distributed.DistributedOptimizer`, calibrated on the loopback runs of
`python -m ferroptim bench --distributed`, and what it predicts at 8 to 1,024 ranks.

    python -m ferroptim bench --distributed --json distributed_loopback.json
    python -m ferroptim bench --distributed --sizes 100K,4M --bucket-size 64K \\
        --json distributed_small_buckets.json
    python benches/distributed_model.py distributed_loopback.json distributed_small_buckets.json

(the two files of the measured run are in benches/) prints, in Markdown: the calibration, the
model against every measurement, then step time, memory and bucket size at scale.

The model counts, per rank and step, what the code does (`ferroptim/distributed/_exchange.py`):

- local copies: the bytes NumPy (and the MPI library, for a rank's own piece) reads and writes
  around the collectives (packing the gradients into a bucket, the rank-order sum, copying the
  gathered values out), at the memory bandwidth of one core, `copy_bandwidth`;
- the optimizer's step: its bytes per element (Adam: 28) over S/N elements (zero1) or S
  (allreduce), at `rule_bandwidth`;
- the collectives, per bucket: a latency per message (alpha) and a time per byte (beta), plus
  the Python work around each collective. Buckets are striped (bucket k is the k-th slice of
  `bucket_size / N` bytes of every rank's range), so every link carries (N - 1)/N of each
  bucket in each phase, as a bandwidth-optimal reduce-scatter and allgather do;
- no overlap: the step runs the exchange, the optimizer and the gather one after the other.

On one machine the "network" is the MPI library's shared memory and the ranks share the cores
and the memory bus, so the calibration fits a copy bandwidth, a beta and a per-bucket cost for
each rank count (weighted least squares, relative error). The predictions at scale take one
rank per node: this machine's one-rank copy and optimizer bandwidths and per-bucket cost, and a
network's alpha and beta (`NETWORKS`, assumed, not measured).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

ITEMSIZE = 4  # float32
ADAM_BYTES_PER_ELEMENT = 28  # reads p, g, m, v; writes p, m, v
ADAM_SLOTS = 2
DEFAULT_BUCKET = 64 * 2**20
MODELS = {"GPT-2 small": 124_439_808, "1.3B": 1_300_000_000}
RANKS = (8, 16, 32, 64, 128, 256, 512, 1024)
HEADLINE_RANKS = (8, 64, 1024)
# The latency terms of a bucket size the model recommends: at most this share of the
# bandwidth terms.
LATENCY_SHARE = 0.05
# Python's work per bucket that grows with the ranks: per rank, packing its slice into the
# send buffer and adding its piece in rank order (the exchange), and copying its piece out (the
# gather). Timed on the calibration machine with the collectives replaced by no-ops, N = 64
# and 1,024, 16 elements per rank and bucket: 1.2-1.4 us per rank and bucket for the
# exchange, 0.5-0.7 for the gather, so 1.8 us in all.
PYTHON_PER_RANK_BUCKET = 1.8e-6
# Once a step the ranks' verdicts (`agree`) are unpickled: about 0.5 us per rank.
PYTHON_PER_RANK_AGREE = 0.5e-6


@dataclasses.dataclass(frozen=True)
class Network:
    """A network as the model sees it.

    Args:
        name: what it is.
        gbits: the link's bandwidth per node, Gbit/s.
        alpha: seconds of latency per message.
    """

    name: str
    gbits: float
    alpha: float

    @property
    def beta(self) -> float:
        """Seconds per byte on one link."""
        return 8 / (self.gbits * 1e9)


NETWORKS = (
    Network("25 Gbit/s Ethernet, TCP", 25, 25e-6),
    Network("100 Gbit/s RoCE", 100, 5e-6),
    Network("400 Gbit/s InfiniBand", 400, 2e-6),
)


# --- what a step moves ------------------------------------------------------------------------


def stripe(elements: int, ranks: int, bucket: int) -> int:
    """Elements of each rank's range per bucket (`Exchange._stripe`)."""
    return max(1, bucket // (ITEMSIZE * ranks))


def bucket_count(elements: int, ranks: int, bucket: int) -> int:
    """Buckets per phase: each takes a stripe of every rank's range of about S/N."""
    return -(-math.ceil(elements / ranks) // stripe(elements, ranks, bucket))


@dataclasses.dataclass(frozen=True)
class Step:
    """What one rank's step moves, in bytes (S elements, N ranks, one mode, one bucket size).

    Args:
        exchange_local, gather_local: bytes NumPy and the MPI library's own-piece copy read and
            write in `Exchange.average` and `Exchange.gather`.
        received: bytes each collective phase receives from the other ranks; with striped
            buckets also the bytes on every link, per phase.
        rule: bytes the optimizer's step streams.
        buckets: buckets per phase.
    """

    exchange_local: float
    gather_local: float
    received: float
    rule: float
    buckets: int


def step_bytes(elements: int, ranks: int, mode: str, bucket: int) -> Step:
    """Count a step's bytes as the code moves them (see the module docstring).

    Args:
        elements: S, float32.
        ranks: N.
        mode: "allreduce" or "zero1".
        bucket: bucket_size, bytes.
    """
    g = elements * ITEMSIZE
    n = ranks
    # average: pack every bucket (read g, write the send buffer), the Alltoallv's copy of the
    # rank's own piece, the rank-order sum straight into the result (N - 1 adds of G/N: two
    # reads and a write each; one copy at one rank), the divide in place.
    exchange_local = 2 * g + (2 + max(3 * (n - 1), 2) + 2) * g / n
    # gather: the Allgatherv's copy of the rank's own piece, then every received piece copied
    # into the arrays (with zero1 the rank's own range is already there).
    gather_local = 2 * g / n + (2 * g * (n - 1) / n if mode == "zero1" else 2 * g)
    stepped = elements / n if mode == "zero1" else elements
    return Step(
        exchange_local,
        gather_local,
        (n - 1) / n * g,
        ADAM_BYTES_PER_ELEMENT * stepped,
        bucket_count(elements, n, bucket),
    )


def buffers(elements: int, ranks: int, mode: str, bucket: int) -> float:
    """The distributed optimizer's own bytes on a rank: its range of the averaged gradient,
    with allreduce the whole averaged gradient, and the exchange's send and receive buffers
    (one bucket each: a stripe of every rank's range)."""
    share = math.ceil(elements / ranks)
    own = share * ITEMSIZE + (elements * ITEMSIZE if mode == "allreduce" else 0)
    return own + 2 * ranks * min(stripe(elements, ranks, bucket), share) * ITEMSIZE


# --- the loopback calibration -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Measured:
    """One row of a loopback run: medians of the slowest rank, seconds; bytes of the most."""

    ranks: int
    case: str
    elements: int
    mode: str
    bucket: int
    step: float
    exchange: float
    rule: float
    gather: float
    buffers: int
    temporaries: int


def load(paths: Sequence[str]) -> Tuple[List[Measured], int]:
    """The Adam rows of the runs' JSON files, and the cores of the machine they ran on."""
    rows, cores = [], 1
    for path in paths:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        bucket = int(data["settings"]["distributed"]["bucket_size"])
        cores = max(cores, int(data["environment"]["cores"] or 1))
        for r in data["results"]:
            if r["optimizer"] != "adam":
                continue
            median = r["median_s"]
            rows.append(
                Measured(
                    r["ranks"],
                    r["case"],
                    r["elements"],
                    r["mode"],
                    bucket,
                    median["step"],
                    median["exchange"],
                    median["rule"],
                    median["gather"],
                    max(r["bytes"]["buffers"]),
                    max(r["bytes"]["temporaries"]),
                )
            )
    return rows, cores


@dataclasses.dataclass(frozen=True)
class Loopback:
    """The fitted constants of one rank count on the calibration machine.

    Args:
        copy_bandwidth: bytes/s of NumPy's copies and sums (reads + writes) in a rank.
        beta: seconds per byte a rank receives over shared memory.
        exchange_bucket, gather_bucket: seconds per bucket of each phase (Python, NumPy's
            allocations, MPI's call).
        rule_bandwidth: bytes/s of the optimizer's step.
        other: seconds of a step outside its three parts (the ranks' `agree`, Python).
        shared: how many ranks share each core (1 when fitted at this rank count; more when
            these are another rank count's constants, every term then that many times longer).
    """

    copy_bandwidth: float
    beta: float
    exchange_bucket: float
    gather_bucket: float
    rule_bandwidth: float
    other: float
    shared: float = 1.0

    def phases(self, step: Step) -> Tuple[float, float]:
        """The exchange's and the gather's seconds."""
        exchange = step.exchange_local / self.copy_bandwidth + step.received * self.beta
        gather = step.gather_local / self.copy_bandwidth + step.received * self.beta
        exchange += step.buckets * self.exchange_bucket
        gather += step.buckets * self.gather_bucket
        return exchange * self.shared, gather * self.shared

    def step(self, step: Step) -> float:
        """A step's seconds."""
        exchange, gather = self.phases(step)
        return exchange + gather + (step.rule / self.rule_bandwidth + self.other) * self.shared


def _fit_relative(features: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Non-negative coefficients c of times ~ features @ c minimising the squared relative
    errors; a feature whose coefficient would be negative is dropped."""
    keep = [k for k in range(features.shape[1]) if np.any(features[:, k])]
    while True:
        scaled = features[:, keep] / times[:, None]
        solution = np.linalg.lstsq(scaled, np.ones(len(times)), rcond=None)[0]
        if np.all(solution >= 0):
            out = np.zeros(features.shape[1])
            out[keep] = solution
            return out
        keep.pop(int(np.argmin(solution)))


def calibrate(rows: Sequence[Measured], cores: int) -> Dict[int, Loopback]:
    """Per rank count up to `cores`, the constants that fit its rows' exchange, gather and rule
    times; above, the constants of `cores` ranks with the cores time-shared."""
    fits = {}
    counts = sorted({r.ranks for r in rows})
    for n in [n for n in counts if n <= cores]:
        mine = [r for r in rows if r.ranks == n]
        features, times = [], []
        for r in mine:
            s = step_bytes(r.elements, n, r.mode, r.bucket)
            features.append([s.exchange_local, s.received, s.buckets, 0])
            features.append([s.gather_local, s.received, 0, s.buckets])
            times += [r.exchange, r.gather]
        inverse_copy, beta, exchange_bucket, gather_bucket = _fit_relative(
            np.array(features, dtype=np.float64), np.array(times)
        )
        inverse_rule = _fit_relative(
            np.array([[step_bytes(r.elements, n, r.mode, r.bucket).rule] for r in mine]),
            np.array([r.rule for r in mine]),
        )[0]
        other = statistics.median(r.step - r.exchange - r.rule - r.gather for r in mine)
        fits[n] = Loopback(
            float(1 / inverse_copy),
            float(beta),
            float(exchange_bucket),
            float(gather_bucket),
            float(1 / inverse_rule),
            max(other, 0.0),
        )
    base = max(fits)
    for n in [n for n in counts if n > base]:
        fits[n] = dataclasses.replace(fits[base], shared=n / base)
    return fits


def predicted_step(fit: Loopback, r: Measured) -> Tuple[float, float, float]:
    """The model's exchange, gather and step seconds for a measured row."""
    s = step_bytes(r.elements, r.ranks, r.mode, r.bucket)
    exchange, gather = fit.phases(s)
    return exchange, gather, fit.step(s)


# --- at scale ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One step on a cluster, seconds, by term."""

    local: float
    rule: float
    bandwidth: float
    latency: float

    @property
    def total(self) -> float:
        return self.local + self.rule + self.bandwidth + self.latency


def bucket_latency(node: Loopback, network: Network, ranks: int) -> float:
    """Seconds of latency per bucket, both phases: N - 1 messages each, this machine's work per
    bucket, and the Python lists of N entries."""
    fixed = node.exchange_bucket + node.gather_bucket
    return fixed + 2 * (ranks - 1) * network.alpha + PYTHON_PER_RANK_BUCKET * ranks


def at_scale(
    node: Loopback,
    network: Network,
    elements: int,
    ranks: int,
    mode: str,
    bucket: int = DEFAULT_BUCKET,
) -> Prediction:
    """One rank per node: this machine's one-rank constants, the network's alpha and beta.

    Args:
        node: the calibration at one rank.
        network: the network.
        elements, ranks, mode, bucket: as `step_bytes`.
    """
    s = step_bytes(elements, ranks, mode, bucket)
    n = ranks
    per_bucket = bucket_latency(node, network, n)
    # The ranks' verdicts: a small allgather (log2 N rounds) and N unpickled.
    agree = math.ceil(math.log2(n)) * network.alpha + PYTHON_PER_RANK_AGREE * n
    return Prediction(
        local=(s.exchange_local + s.gather_local) / node.copy_bandwidth,
        rule=s.rule / node.rule_bandwidth,
        # Striped buckets: every link carries (N - 1)/N of each bucket in each phase.
        bandwidth=2 * s.received * network.beta,
        latency=s.buckets * per_bucket + agree + node.other,
    )


def recommended_bucket(node: Loopback, network: Network, elements: int, ranks: int) -> float:
    """The smallest bucket whose latency terms are at most
    `LATENCY_SHARE` of the bandwidth terms (bytes; more than the model's bytes: one bucket)."""
    n = ranks
    per_bucket = bucket_latency(node, network, n)
    bandwidth_per_byte = 2 * (n - 1) / n * network.beta
    return per_bucket / (LATENCY_SHARE * bandwidth_per_byte)


# --- the report -------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms < 10:
        return f"{ms:.2f}"
    return f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def _bytes(count: float) -> str:
    for unit, size in [("GB", 1e9), ("MB", 1e6), ("KB", 1e3)]:
        if count >= size:
            value = count / size
            return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{count:.0f} B"


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> List[str]:
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(":---" if k < left else "---:" for k in range(len(columns))) + "|",
    ]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _bucket_name(bucket: int) -> str:
    return f"{bucket >> 20} MiB" if bucket >= 2**20 else f"{bucket >> 10} KiB"


def report(rows: Sequence[Measured], cores: int) -> str:
    fits = calibrate(rows, cores)
    out = ["### Calibration (loopback)", ""]
    out += _table(
        (
            "ranks",
            "copy GB/s",
            "shared-memory GB/s (1/beta)",
            "exchange per bucket us",
            "gather per bucket us",
            "Adam step GB/s",
            "other ms",
        ),
        [
            [
                str(n),
                f"{f.copy_bandwidth / 1e9:.1f}",
                f"{1 / f.beta / 1e9:.2f}" if f.beta else "n/a",
                f"{f.exchange_bucket * 1e6:.0f}",
                f"{f.gather_bucket * 1e6:.0f}",
                f"{f.rule_bandwidth / 1e9:.1f}",
                f"{f.other * 1e3:.2f}",
            ]
            for n, f in fits.items()
            if f.shared == 1
        ],
        left=1,
    )
    out += ["", "### The model against the measurements", ""]
    body = []
    for r in rows:
        exchange, gather, step = predicted_step(fits[r.ranks], r)
        body.append(
            [
                str(r.ranks),
                r.case,
                r.mode,
                _bucket_name(r.bucket),
                f"{_ms(r.exchange)} / {_ms(exchange)}",
                f"{_ms(r.gather)} / {_ms(gather)}",
                f"{_ms(r.step)} / {_ms(step)}",
                f"{step / r.step - 1:+.0%}",
                f"{r.buffers / 1e6:.1f} / "
                f"{buffers(r.elements, r.ranks, r.mode, r.bucket) / 1e6:.1f}",
                f"{r.temporaries / 1e6:.2f}",
            ]
        )
    out += _table(
        (
            "ranks",
            "case",
            "mode",
            "bucket",
            "exchange ms",
            "gather ms",
            "step ms",
            "step error",
            "buffers MB",
            "temporaries MB",
        ),
        body,
        left=4,
    )
    out += [
        "",
        f"(measured / predicted; above {cores} ranks, {cores} ranks' constants with every term "
        "as many times longer as ranks share a core)",
    ]
    node = fits[1]
    for model, elements in MODELS.items():
        out += ["", f"### Step time at scale: {model}, Adam, 64 MiB buckets (ms)", ""]
        columns = ["ranks"] + [
            f"{network.gbits:g} Gbit/s {mode}"
            for network in NETWORKS
            for mode in ("allreduce", "zero1")
        ]
        body = []
        for n in RANKS:
            body.append(
                [str(n)]
                + [
                    _ms(at_scale(node, network, elements, n, mode).total)
                    for network in NETWORKS
                    for mode in ("allreduce", "zero1")
                ]
            )
        out += _table(columns, body, left=1)
    out += [
        "",
        "### Where the time goes: GPT-2 small, zero1, 64 MiB buckets (ms: local copies + Adam + "
        "bandwidth + latency)",
        "",
    ]
    gpt2 = MODELS["GPT-2 small"]
    body = []
    for network in NETWORKS:
        for n in HEADLINE_RANKS:
            p = at_scale(node, network, gpt2, n, "zero1")
            body.append(
                [
                    network.name,
                    str(n),
                    f"{_ms(p.local)} + {_ms(p.rule)} + {_ms(p.bandwidth)} + {_ms(p.latency)} "
                    f"= {_ms(p.total)}",
                ]
            )
    out += _table(("network", "ranks", "step ms"), body, left=2)
    out += ["", "### Memory per rank (Adam, float32, 64 MiB buckets)", ""]
    body = []
    for model, elements in MODELS.items():
        g = elements * ITEMSIZE
        for n in (1,) + RANKS:
            state = ADAM_SLOTS * g / n
            body.append(
                [
                    model,
                    str(n),
                    _bytes(2 * g),
                    _bytes(ADAM_SLOTS * g + buffers(elements, n, "allreduce", DEFAULT_BUCKET)),
                    _bytes(state + buffers(elements, n, "zero1", DEFAULT_BUCKET)),
                    _bytes(2 * n * min(stripe(elements, n, DEFAULT_BUCKET), -(-elements // n)) * 4),
                ]
            )
    out += _table(
        (
            "model",
            "ranks",
            "parameters + gradients",
            "allreduce state + buffers",
            "zero1 state + buffers",
            "of which bucket buffers",
        ),
        body,
        left=2,
    )
    out += ["", "### Bucket size (GPT-2 small, zero1)", ""]
    body = []
    for network in NETWORKS:
        for n in HEADLINE_RANKS:
            best = recommended_bucket(node, network, gpt2, n)
            whole = gpt2 * ITEMSIZE
            one = at_scale(node, network, gpt2, n, "zero1", bucket=whole)
            body.append(
                [
                    network.name,
                    str(n),
                    _bytes(best) if best < whole else "the whole model",
                    f"{one.latency / one.bandwidth:.0%}",
                ]
                + [
                    _ms(at_scale(node, network, gpt2, n, "zero1", bucket=b).total)
                    for b in (4 * 2**20, 16 * 2**20, DEFAULT_BUCKET, 256 * 2**20, whole)
                ]
            )
    out += _table(
        (
            "network",
            "ranks",
            f"latency <= {LATENCY_SHARE:.0%} of bandwidth from",
            "one bucket: latency / bandwidth",
            "step ms at 4 MiB",
            "16 MiB",
            "64 MiB",
            "256 MiB",
            "one bucket",
        ),
        body,
        left=2,
    )
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("json", nargs="+", help="the --json files of loopback runs")
    args = parser.parse_args(argv)
    rows, cores = load(args.json)
    if not any(r.ranks == 1 for r in rows):
        parser.error("the runs need a 1-rank launch: the predictions at scale start from it")
    sys.stdout.write(report(rows, cores))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stop a training run mid-way, resume it from its last checkpoint, and end with the same bits as
the run that never stopped.

The model and data are those of `digits_distributed.py` (a NumPy MLP on scikit-learn's bundled
digits), the batches those of `digits_optimizers.py`, imported from them. The optimizer
carries every kind of state a resume has to get right:

    AdamW(learning_rate=CosineDecay(0.0, ..., warmup_target=3e-3, warmup_steps=<one epoch>),
          weight_decay=0.004, global_clipnorm=1.0, use_ema=True, ema_momentum=0.99)

with the biases excluded from the weight decay: Adam's two moments, the step count that drives
the schedule and the bias corrections, the moving averages of the weights (EMA), the
exclusions. Three runs, from the same initial weights over the same batches:

1. **Uninterrupted**: every step, one go.
2. **Interrupted**: every `--checkpoint-every` steps it writes a checkpoint: `opt.save(path)`,
   one file that holds the optimizer's configuration (the schedule included), its state and,
   by default, the parameters it updates, written atomically (a crash during the write leaves
   the previous checkpoint). Beside it, `np.savez` keeps what the optimizer does not know: the
   losses seen so far. At `--crash-at` the run "crashes" (an exception) and everything it held
   in memory is dropped: the steps since the last checkpoint are lost.
3. **Resumed**: new arrays for the parameters (of the right shapes, any values), and
   `Optimizer.load(path, params)` gives a new optimizer, built, restored, and the parameters
   overwritten with the saved ones. The batches come from a fixed order (drawn from `--seed`),
   so the data's position is the step count, `opt.iterations`: the resumed run redoes the lost
   steps and goes on to the end.

The example asserts that the resumed run's losses, final parameters, every optimizer variable
and the test accuracy of the EMA weights equal the uninterrupted run's, bit for bit. For
contrast, a fourth run restarts from the checkpoint's parameters with a fresh optimizer: its
schedule warms up again from 0 and its moments start from zero. It is another run, not
necessarily a worse one (here its learning rate is still high at the last step, and its
training loss ends lower), and nothing of it is the run the checkpoint was taken from.

    python examples/checkpoint_resume.py                    # about 10 seconds
    python examples/checkpoint_resume.py --plot             # also docs/images/checkpoint_resume.png
    python examples/checkpoint_resume.py --plot resume.png  # ... or this file
    python examples/checkpoint_resume.py --small            # a few seconds, as the tests run it

The checkpoints go to a temporary directory unless `--checkpoint-dir` names one.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt
from digits_distributed import (
    Digits,
    Params,
    evaluate,
    init_params,
    load_data,
    loss_and_gradients,
)
from digits_optimizers import DOCS_IMAGES, DPI, FIGSIZE, batch_order
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import ferroptim as fo

# Where `--plot` with no file name writes: the image the documentation shows.
DEFAULT_PLOT = DOCS_IMAGES / "checkpoint_resume.png"
CHECKPOINT = "optimizer.fo"  # `opt.save`: the optimizer and the parameters
HISTORY = "history.npz"  # `np.savez`: the losses so far
RESUMED_STYLE = {"color": "C1", "ls": "--"}  # dashed, so the uninterrupted run shows around it


class SimulatedCrash(Exception):
    """The interrupted run stopping at `--crash-at`."""


def make_optimizer(steps: int, warmup: int) -> fo.optimizers.AdamW:
    """The optimizer of every run: AdamW on a warmup over `warmup` steps to 3e-3 then a cosine
    decay to 0 at `steps`, with global norm clipping and an EMA of the weights, the biases
    excluded from the weight decay."""
    # The schedules' constructors carry no annotations (hence the ignore under mypy --strict).
    schedule = fo.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=3e-3, warmup_steps=warmup
    )
    opt = fo.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=0.004,
        global_clipnorm=1.0,
        use_ema=True,
        ema_momentum=0.99,
    )
    opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


@dataclass
class Run:
    """A run's parameters and optimizer, and what it saw: the batch loss of every step (those
    before `start` read from the checkpoint's history), and the learning rate of every step it
    took itself, from step `start`."""

    params: Params
    opt: fo.optimizers.Optimizer
    start: int = 0
    losses: List[float] = field(default_factory=list)
    rates: List[float] = field(default_factory=list)


def train(
    run: Run,
    data: Digits,
    batches: Sequence[npt.NDArray[Any]],
    checkpoints: Optional[pathlib.Path] = None,
    every: int = 0,
    crash_at: Optional[int] = None,
) -> None:
    """Train `run` from the step after its last recorded loss to the last batch. With
    `checkpoints`, write the losses so far and then the checkpoint to that directory every
    `every` steps; at step `crash_at`, raise `SimulatedCrash`."""
    for step in range(len(run.losses), len(batches)):
        if crash_at is not None and step == crash_at:
            raise SimulatedCrash(f"stopped at step {step}")
        if checkpoints is not None and step and step % every == 0:
            # The history first: a crash between the two writes leaves a history longer than
            # the checkpoint's step count, and the resume reads only what it needs of it. Each
            # write replaces its file whole (`opt.save` does so itself).
            partial = checkpoints / (HISTORY + ".partial")
            with open(partial, "wb") as f:
                np.savez(f, losses=np.array(run.losses))
            os.replace(partial, checkpoints / HISTORY)
            run.opt.save(checkpoints / CHECKPOINT)
        batch = batches[step]
        loss, grads = loss_and_gradients(run.params, data.x_train[batch], data.y_train[batch])
        run.rates.append(float(run.opt.learning_rate))
        run.opt.apply(grads, run.params)
        run.losses.append(loss)


def resume(checkpoints: pathlib.Path, shapes: Dict[str, Any]) -> Run:
    """A new run from the last checkpoint in `checkpoints`: new parameter arrays of `shapes`
    (their values do not matter: the checkpoint overwrites them), the optimizer made and
    restored by `Optimizer.load`, and the losses of the steps before the checkpoint."""
    params = {name: np.full(shape, np.nan, np.float32) for name, shape in shapes.items()}
    opt = fo.optimizers.Optimizer.load(checkpoints / CHECKPOINT, params)
    with np.load(checkpoints / HISTORY) as history:
        losses: List[float] = history["losses"].tolist()
    if len(losses) < opt.iterations:
        raise ValueError(
            f"The history holds {len(losses)} losses, the checkpoint is at step {opt.iterations}."
        )
    return Run(params, opt, start=opt.iterations, losses=losses[: opt.iterations])


def ema_accuracy(run: Run, data: Digits) -> float:
    """The test accuracy of the run's moving averages of the weights (the parameters Keras's
    `finalize_variable_values` would leave), evaluated on a copy."""
    averaged = {name: p.copy() for name, p in run.params.items()}
    run.opt.finalize_variable_values(averaged)
    return evaluate(averaged, data.x_test, data.y_test)[1]


def same_bits(a: Sequence[npt.NDArray[Any]], b: Sequence[npt.NDArray[Any]]) -> bool:
    """Whether the two lists of arrays have the same dtypes, shapes and bits."""
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b)
    )


def running_mean(values: Sequence[float], window: int) -> npt.NDArray[np.float64]:
    """The mean of each `window` consecutive values (shorter at the start)."""
    sums = np.cumsum(np.asarray(values, np.float64))
    ends = np.arange(len(values))
    starts = np.maximum(ends - window, -1)
    totals = sums[ends] - np.where(starts >= 0, sums[np.maximum(starts, 0)], 0.0)
    return totals / (ends - starts)


def plot(
    whole: Run,
    crashed: Tuple[List[float], List[float]],
    resumed: Run,
    fresh: Run,
    window: int,
    path: pathlib.Path,
    title: str,
) -> None:
    """Two panels, step by step: the batch loss (running mean over `window` steps) and the
    learning rate, of the uninterrupted run, the interrupted run up to its crash (`crashed`,
    its losses and rates), the resumed run and the run with a fresh optimizer."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: a PNG without a display or pyplot's global state
    loss_axes, rate_axes = fig.subplots(1, 2)
    start, crash = resumed.start, len(crashed[0])
    series: List[Tuple[str, int, List[float], List[float], Dict[str, Any]]] = [
        # label, the first step drawn, the losses from step 0, the rates from the first step
        # drawn, the line's style
        ("uninterrupted", 0, whole.losses, whole.rates, {"color": "0.75", "linewidth": 6}),
        ("interrupted (crash)", 0, *crashed, {"color": "C0", "linewidth": 1.5}),
        ("resumed from the checkpoint", start, resumed.losses, resumed.rates, RESUMED_STYLE),
        ("fresh optimizer, same weights", start, fresh.losses, fresh.rates, {"color": "C2"}),
    ]
    for label, first, losses, rates, style in series:
        steps = np.arange(first, len(losses))
        loss_axes.plot(steps, running_mean(losses, window)[first:], label=label, **style)
        rate_axes.plot(steps, rates, label=label, **style)
    for axes in (loss_axes, rate_axes):
        axes.axvline(start, color="0.3", ls=":", linewidth=1, label="last checkpoint")
        axes.axvline(crash, color="C3", ls=":", linewidth=1, label="crash")
        axes.set(xlabel="step")
    loss_axes.set(yscale="log", ylabel=f"batch loss (mean of {window} steps)")
    loss_axes.set_title("training loss")
    loss_axes.legend(fontsize="small")
    rate_axes.set(ylabel="learning rate")
    rate_axes.set_title("learning rate (CosineDecay with warmup)")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line (`argv`, or `sys.argv[1:]` for None), defaults filled in."""
    parser = argparse.ArgumentParser(
        description="Interrupt a digits MLP's training, resume it from its checkpoint, and "
        "check that it ends with the same bits as the run that never stopped.",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 20 (4 with --small)")
    parser.add_argument("--hidden", type=int, default=None, help="default 64 (32 with --small)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument(
        "--checkpoint-every", type=int, default=None, help="default 100 steps (25 with --small)"
    )
    parser.add_argument(
        "--crash-at", type=int, default=None, help="the step the run stops at (default: 45%%)"
    )
    parser.add_argument("--checkpoint-dir", default=None, help="default: a temporary directory")
    parser.add_argument(
        "--plot",
        nargs="?",
        const=str(DEFAULT_PLOT),
        default=None,
        metavar="FILE",
        help="write the curves to this PNG (docs/images/checkpoint_resume.png if no FILE)",
    )
    parser.add_argument("--small", action="store_true", help="a run of seconds, for CI")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 4 if args.small else 20
    if args.hidden is None:
        args.hidden = 32 if args.small else 64
    if args.checkpoint_every is None:
        args.checkpoint_every = 25 if args.small else 100
    if min(args.epochs, args.hidden, args.batch_size, args.checkpoint_every) < 1:
        parser.error("--epochs, --hidden, --batch-size and --checkpoint-every must be positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the uninterrupted, interrupted, resumed and fresh-optimizer runs, assert that the
    resumed run is the uninterrupted one bit for bit, print a summary, write the plot if asked,
    and return the summary with the three runs that finished (`Run`s under "runs")."""
    args = parse_args(argv)
    data = load_data()
    steps_per_epoch = len(data.y_train) // args.batch_size
    batches = batch_order(len(data.y_train), args.epochs, args.batch_size, args.seed)
    steps = len(batches)
    crash_at = round(0.45 * steps) if args.crash_at is None else args.crash_at
    if not args.checkpoint_every <= crash_at < steps:
        raise ValueError(
            f"The crash (step {crash_at}) must come after the first checkpoint (step "
            f"{args.checkpoint_every}) and before the end (step {steps})."
        )
    initial = init_params(data.x_train.shape[1], args.hidden, np.random.default_rng(args.seed))

    def fresh_run() -> Run:
        params = {name: p.copy() for name, p in initial.items()}
        return Run(params, make_optimizer(steps, steps_per_epoch))

    whole = fresh_run()
    train(whole, data, batches)

    with tempfile.TemporaryDirectory() as scratch:
        checkpoints = pathlib.Path(args.checkpoint_dir or scratch)
        checkpoints.mkdir(parents=True, exist_ok=True)
        interrupted = fresh_run()
        try:
            train(interrupted, data, batches, checkpoints, args.checkpoint_every, crash_at)
        except SimulatedCrash as crash:
            print(f"interrupted run: {crash}")
        shapes = {name: p.shape for name, p in interrupted.params.items()}
        # Nothing of the interrupted run survives but its files (and, for the plot, what it saw).
        crashed = (interrupted.losses, interrupted.rates)
        del interrupted

        resumed = resume(checkpoints, shapes)
        print(
            f"resumed from the checkpoint at step {resumed.start}: "
            f"{crash_at - resumed.start} steps lost and redone"
        )
        train(resumed, data, batches)

        # The contrast: the checkpoint's parameters and data position, a fresh optimizer.
        restored = resume(checkpoints, shapes)
        fresh = Run(
            restored.params, make_optimizer(steps, steps_per_epoch), restored.start, restored.losses
        )
        train(fresh, data, batches)

    checks = {
        "losses": whole.losses == resumed.losses,
        "parameters": same_bits(list(whole.params.values()), list(resumed.params.values())),
        "optimizer variables": same_bits(whole.opt.variables, resumed.opt.variables)
        and whole.opt.variable_names == resumed.opt.variable_names,
        "iterations": whole.opt.iterations == resumed.opt.iterations == steps,
    }
    accuracy = {"whole": ema_accuracy(whole, data), "resumed": ema_accuracy(resumed, data)}
    checks["EMA test accuracy"] = accuracy["whole"] == accuracy["resumed"]
    for what, same in checks.items():
        print(f"resumed vs uninterrupted, {what}: {'identical' if same else 'DIFFERENT'}")
    if not all(checks.values()):
        raise AssertionError("The resumed run differs from the uninterrupted one.")
    fresh_accuracy = ema_accuracy(fresh, data)
    fresh_same = same_bits(list(whole.params.values()), list(fresh.params.values()))
    print(
        f"test accuracy of the EMA weights: uninterrupted {accuracy['whole']:.4f}, resumed "
        f"{accuracy['resumed']:.4f}, fresh optimizer from the checkpoint {fresh_accuracy:.4f}"
    )
    print(
        f"final batch loss: uninterrupted {whole.losses[-1]:.6f}, resumed "
        f"{resumed.losses[-1]:.6f}, fresh optimizer {fresh.losses[-1]:.6f}"
    )
    if args.plot is not None:
        title = (
            f"digits, MLP 64-{args.hidden}-10, AdamW with warmup, cosine decay and EMA: "
            f"stopped at step {crash_at}, resumed from step {resumed.start}"
        )
        plot(whole, crashed, resumed, fresh, steps_per_epoch, pathlib.Path(args.plot), title)
        print(f"plot written to {args.plot}")
    return {
        "steps": steps,
        "checkpoint_step": resumed.start,
        "crash_step": crash_at,
        "bitwise": all(checks.values()),
        "accuracy": accuracy["whole"],
        "resumed_accuracy": accuracy["resumed"],
        "fresh_accuracy": fresh_accuracy,
        "fresh_same_bits": fresh_same,
        "interrupted_losses": crashed[0],
        "runs": {"whole": whole, "resumed": resumed, "fresh": fresh},
    }


if __name__ == "__main__":
    main()

"""Six ferroptim optimizers train the same digits classifier, and each is timed against the same
training loop with the optimizer written by hand in NumPy.

The data are scikit-learn's bundled 8x8 digits (no download), the model the NumPy MLP of
`digits_distributed.py` (64 -> hidden -> 10, ReLU, softmax cross-entropy, float32, forward and
backward written out), imported from it. Every optimizer starts from the same initial weights
and sees the same batches in the same order:

    SGD            SGD(learning_rate=0.01, momentum=0.9)
    Adam           Adam(learning_rate=1e-3)
    AdamW          AdamW(learning_rate=1e-3, weight_decay=0.004), biases excluded from the decay
    RMSprop        RMSprop(learning_rate=1e-3)
    Lion           Lion(learning_rate=3e-4)
    Adam + cosine  Adam on CosineDecay: a linear warmup from 0 to 3e-3 over the first epoch,
                   then a cosine decay to 0 at the last step

Each runs twice, through the same loop: once with the ferroptim optimizer (one native call per
step for the whole model), once with the same rule written as a NumPy user writes it, Keras's
formulas in Keras's order with Keras's float32 scalars (`NumpyAdam` and the classes next to
it). Before it trusts the comparison, the example gives both the same gradients for the first
`CHECK_STEPS` steps and requires the same parameters, up to float32 rounding. They are in fact
the same bits, step after step, so the two whole runs end with the same parameters: the table
says so ("the same bits"). The exception is the learning-rate schedule, which the NumPy
version computes in double (`math.cos`) and ferroptim in float32, as Keras does: the two rates
differ in their last bit at some steps, and the runs drift apart by rounding, to about the
same accuracy.

The table gives, for each optimizer, the final loss on the whole training set, the test loss
and accuracy, and the median time of one optimizer step (`apply`) with ferroptim and with
NumPy. With `--plot`, the training loss and the test accuracy after each epoch, and the step
times, go to a PNG.

A model this small (4.8K parameters at the default width) is where per-call overhead shows: a
NumPy step is a handful of ufunc calls per parameter tensor, each with its own dispatch and
temporaries, where ferroptim makes one call for all four tensors. The steps are timed inside
the training loop, where the forward and backward passes have just run through the caches:
both kinds of step take longer there than in a loop of steps alone (which is what
`python -m ferroptim bench` measures), and more so on a busy machine.

    python examples/digits_optimizers.py                    # 20 to 30 seconds
    python examples/digits_optimizers.py --plot             # also docs/images/digits_optimizers.png
    python examples/digits_optimizers.py --plot curves.png  # ... or this file
    python examples/digits_optimizers.py --small            # a few seconds, as the tests run it
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt
from digits_distributed import (
    Digits,
    Params,
    Stepper,
    evaluate,
    init_params,
    load_data,
    loss_and_gradients,
)
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import ferroptim as fo

# Where `--plot` with no file name writes: the image the documentation shows.
DOCS_IMAGES = pathlib.Path(__file__).resolve().parent.parent / "docs" / "images"
DEFAULT_PLOT = DOCS_IMAGES / "digits_optimizers.png"
# The figures (this example's and checkpoint_resume.py's): 12 x 4 inches at 100 dots per inch,
# a 1200 x 400 PNG.
FIGSIZE = (12.0, 4.0)
DPI = 100
# Given the same gradients for this many steps, ferroptim and the NumPy rule must end within
# `MAX_EPS` float32 epsilons of each other (relative to each tensor's largest element). They
# end equal, bit for bit, but for the learning-rate schedule, whose cosine the two compute
# with different roundings.
CHECK_STEPS = 10
MAX_EPS = 8.0

LearningRate = Union[float, Callable[[int], float]]
F32 = np.float32


# --- the optimizers written by hand in NumPy -----------------------------------------------------


def float32_power(base: float, exponent: int) -> np.float32:
    """float32(base) ** exponent in float32, correctly rounded: computed in double, then rounded
    once. Keras computes Adam's `beta ** t` in float32; a float32 `pow` may be off by one bit
    from one C library to another, this is not."""
    return F32(float(F32(base)) ** exponent)


class NumpyOptimizer:
    """An optimizer as a NumPy user writes it: per-parameter slots in a dict, a Python loop over
    the parameters, ufuncs with temporaries. Subclasses write `update`.

    The scalars follow Keras's float32 conventions, so that the rule gives Keras's numbers (and
    so ferroptim's): the learning rate is rounded to float32 (Keras keeps it in a float32
    variable); a hyperparameter written in a Python expression such as `1 - beta_1` is computed
    in double and rounded where it meets an array (NumPy does that with a Python float); a
    scalar Keras computes from tensors, such as Adam's `beta_1 ** t`, is a float32 here too
    (`F32`, `float32_power`).

    Args:
        learning_rate: a float, or a function of the step count (0 for the first step) that
            returns the step's rate, as a Keras schedule is called.
    """

    def __init__(self, learning_rate: LearningRate) -> None:
        self.learning_rate = learning_rate
        self.iterations = 0
        self.slots: Dict[str, List[npt.NDArray[np.float32]]] = {}

    def slot(self, name: str, params: Params) -> List[npt.NDArray[np.float32]]:
        """The slot `name`, one zero array per parameter, created on first use."""
        if name not in self.slots:
            self.slots[name] = [np.zeros_like(p) for p in params.values()]
        return self.slots[name]

    def apply(self, grads: Any, trainable_variables: Any = None) -> None:
        """One step: update `trainable_variables` (a dict name -> array) in place from `grads`
        (a dict with the same keys)."""
        params: Params = trainable_variables
        rate = self.learning_rate
        lr = F32(rate(self.iterations) if callable(rate) else rate)
        self.update(params, grads, lr)
        self.iterations += 1

    def update(self, params: Params, grads: Params, lr: np.float32) -> None:
        """The rule: update every parameter in place, at learning rate `lr`."""
        raise NotImplementedError


class NumpySGD(NumpyOptimizer):
    """Keras's SGD with momentum.

    Args:
        learning_rate: as in `NumpyOptimizer`.
        momentum: the momentum.
    """

    def __init__(self, learning_rate: LearningRate, momentum: float) -> None:
        super().__init__(learning_rate)
        self.momentum = momentum

    def update(self, params: Params, grads: Params, lr: np.float32) -> None:
        """m = m momentum - g lr; p += m."""
        for p, g, m in zip(params.values(), grads.values(), self.slot("momentum", params)):
            m[...] = m * self.momentum - g * lr
            p += m


class NumpyAdam(NumpyOptimizer):
    """Keras's Adam (with "epsilon hat"), and AdamW's decoupled weight decay before it.

    Args:
        learning_rate: as in `NumpyOptimizer`.
        weight_decay: AdamW's decay rate (0 for Adam): p -= p weight_decay lr first, for every
            parameter whose name contains none of `exclude`.
        exclude: names excluded from the weight decay.
        beta_1, beta_2, epsilon: Adam's, with Keras's defaults.
    """

    def __init__(
        self,
        learning_rate: LearningRate,
        weight_decay: float = 0.0,
        exclude: Sequence[str] = (),
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__(learning_rate)
        self.weight_decay, self.exclude = weight_decay, tuple(exclude)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def update(self, params: Params, grads: Params, lr: np.float32) -> None:
        """Decay, then m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); p -= m alpha / (sqrt(v) +
        eps), with alpha = lr sqrt(1 - b2^t) / (1 - b1^t)."""
        t = self.iterations + 1
        beta_1_power, beta_2_power = float32_power(self.beta_1, t), float32_power(self.beta_2, t)
        alpha = lr * np.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        moments = zip(self.slot("momentum", params), self.slot("velocity", params))
        for (name, p), g, (m, v) in zip(params.items(), grads.values(), moments):
            if self.weight_decay and not any(word in name for word in self.exclude):
                p -= p * self.weight_decay * lr
            m += (g - m) * (1 - self.beta_1)
            v += (g * g - v) * (1 - self.beta_2)
            p -= (m * alpha) / (np.sqrt(v) + self.epsilon)


class NumpyRMSprop(NumpyOptimizer):
    """Keras's RMSprop without momentum, not centered (epsilon inside the square root).

    Args:
        learning_rate: as in `NumpyOptimizer`.
        rho, epsilon: RMSprop's, with Keras's defaults.
    """

    def __init__(self, learning_rate: LearningRate, rho: float = 0.9, epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.rho, self.epsilon = rho, epsilon

    def update(self, params: Params, grads: Params, lr: np.float32) -> None:
        """v = rho v + (1 - rho) g^2; p -= lr g / sqrt(v + eps)."""
        for p, g, v in zip(params.values(), grads.values(), self.slot("velocity", params)):
            v[...] = self.rho * v + (1 - self.rho) * (g * g)
            p -= (lr * g) / np.sqrt(v + self.epsilon)


class NumpyLion(NumpyOptimizer):
    """Keras's Lion (which casts its betas to float32 before `1 - beta`).

    Args:
        learning_rate: as in `NumpyOptimizer`.
        beta_1, beta_2: Lion's, with Keras's defaults.
    """

    def __init__(self, learning_rate: LearningRate, beta_1: float = 0.9, beta_2: float = 0.99):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2 = F32(beta_1), F32(beta_2)

    def update(self, params: Params, grads: Params, lr: np.float32) -> None:
        """p -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g."""
        for p, g, m in zip(params.values(), grads.values(), self.slot("momentum", params)):
            p -= lr * np.sign(m * self.beta_1 + g * (1 - self.beta_1))
            m[...] = m * self.beta_2 + g * (1 - self.beta_2)


def warmup_cosine(peak: float, warmup_steps: int, decay_steps: int) -> Callable[[int], float]:
    """Keras's CosineDecay from 0 with a warmup, in plain Python: the rate rises linearly from
    0 to `peak` over `warmup_steps` steps, then falls along a half cosine to 0 over
    `decay_steps` steps."""

    def rate(step: int) -> float:
        step = min(step, warmup_steps + decay_steps)
        if step < warmup_steps:
            return peak * step / warmup_steps
        return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / decay_steps))

    return rate


# --- the contenders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One optimizer: its ferroptim form and its NumPy form, each made fresh for a run of
    `steps` steps of which the first epoch is `warmup` steps, and its curves' line style."""

    name: str
    ferroptim: Callable[[int, int], fo.optimizers.Optimizer]
    numpy: Callable[[int, int], NumpyOptimizer]
    line: str = "-"


def adamw(steps: int, warmup: int) -> fo.optimizers.Optimizer:
    """AdamW with its biases excluded from the weight decay."""
    opt = fo.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.004)
    opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


def adam_cosine(steps: int, warmup: int) -> fo.optimizers.Optimizer:
    """Adam on a warmup to 3e-3 over `warmup` steps, then a cosine decay to 0 at `steps`."""
    # The schedules' constructors carry no annotations (hence the ignore under mypy --strict).
    schedule = fo.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=3e-3, warmup_steps=warmup
    )
    return fo.optimizers.Adam(learning_rate=schedule)


CONTENDERS = (
    Contender(
        "SGD",
        lambda steps, warmup: fo.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        lambda steps, warmup: NumpySGD(0.01, momentum=0.9),
    ),
    Contender(
        "Adam",
        lambda steps, warmup: fo.optimizers.Adam(learning_rate=1e-3),
        lambda steps, warmup: NumpyAdam(1e-3),
    ),
    Contender(
        "AdamW",
        adamw,
        lambda steps, warmup: NumpyAdam(1e-3, weight_decay=0.004, exclude=["bias"]),
        line="--",  # its curves lie on Adam's: its decay takes 4e-6 of a weight per step
    ),
    Contender(
        "RMSprop",
        lambda steps, warmup: fo.optimizers.RMSprop(learning_rate=1e-3),
        lambda steps, warmup: NumpyRMSprop(1e-3),
    ),
    Contender(
        "Lion",
        lambda steps, warmup: fo.optimizers.Lion(learning_rate=3e-4),
        lambda steps, warmup: NumpyLion(3e-4),
    ),
    Contender(
        "Adam + cosine",
        adam_cosine,
        lambda steps, warmup: NumpyAdam(warmup_cosine(3e-3, warmup, steps - warmup)),
    ),
)


# --- training ------------------------------------------------------------------------------------


def batch_order(n_train: int, epochs: int, batch_size: int, seed: int) -> List[npt.NDArray[Any]]:
    """The training set's indices for every step of the run: each epoch a new shuffle (drawn
    from `seed`), cut into batches of `batch_size` (the last partial batch left out). Step `i`
    trains on batch `i`, whatever the optimizer, and after a resume too."""
    rng = np.random.default_rng(seed)
    steps_per_epoch = n_train // batch_size
    batches = []
    for _ in range(epochs):
        order = rng.permutation(n_train)
        batches.extend(np.split(order[: steps_per_epoch * batch_size], steps_per_epoch))
    return batches


@dataclass
class Run:
    """One training run: after each epoch (and at epoch 0, before training), the loss on the
    whole training set, the test loss and the test accuracy; the time of each optimizer step
    (seconds); the final parameters."""

    train_loss: List[float] = field(default_factory=list)
    test_loss: List[float] = field(default_factory=list)
    accuracy: List[float] = field(default_factory=list)
    step_times: List[float] = field(default_factory=list)
    params: Params = field(default_factory=dict)

    def record(self, params: Params, data: Digits) -> None:
        """Evaluate `params` and append the metrics."""
        self.train_loss.append(evaluate(params, data.x_train, data.y_train)[0])
        test_loss, accuracy = evaluate(params, data.x_test, data.y_test)
        self.test_loss.append(test_loss)
        self.accuracy.append(accuracy)

    @property
    def step_us(self) -> float:
        """The median time of one optimizer step, in microseconds (the median, because other
        work on the machine lengthens a few steps by a lot)."""
        return 1e6 * float(np.median(self.step_times))


def train(
    opt: Stepper,
    initial: Params,
    data: Digits,
    batches: Sequence[npt.NDArray[Any]],
    steps_per_epoch: int,
) -> Run:
    """Train a copy of `initial` with `opt`, one step per batch, timing each `opt.apply`."""
    params = {name: p.copy() for name, p in initial.items()}
    run = Run(params=params)
    run.record(params, data)
    for step, batch in enumerate(batches, start=1):
        grads = loss_and_gradients(params, data.x_train[batch], data.y_train[batch])[1]
        start = time.perf_counter()
        opt.apply(grads, params)
        run.step_times.append(time.perf_counter() - start)
        if step % steps_per_epoch == 0:
            run.record(params, data)
    return run


def relative_difference(a: Params, b: Params) -> float:
    """The largest difference between `a` and `b`, relative to the largest element of its
    tensor in `a`, in float32 epsilons (0 when they are equal)."""
    worst = 0.0
    for name, p in a.items():
        difference = float(np.max(np.abs(p - b[name])))
        if difference:
            worst = max(worst, difference / float(np.max(np.abs(p))))
    return worst / float(np.finfo(np.float32).eps)


def same_bits(a: Params, b: Params) -> bool:
    """Whether `a` and `b` hold the same bits."""
    return all(a[name].tobytes() == b[name].tobytes() for name in a)


@dataclass
class Result:
    """A contender's two runs, and how far apart its two forms were after `CHECK_STEPS` steps
    on the same gradients (`relative_difference`)."""

    contender: Contender
    ferroptim: Run
    numpy: Run
    first_steps: float

    @property
    def name(self) -> str:
        """The contender's name."""
        return self.contender.name


def first_steps_apart(
    contender: Contender, initial: Params, data: Digits, batches: Sequence[npt.NDArray[Any]]
) -> float:
    """Step `contender`'s two forms from `initial` on the same gradients (those at the
    ferroptim run's parameters) for `CHECK_STEPS` steps, and return how far apart they end
    (`relative_difference`).

    The same gradients, not each run's own: should the two differ by one rounding, a gradient
    that is a cancellation of large terms could differ in all its digits, and Adam-like rules
    turn any gradient into a step of about the learning rate."""
    steps_per_epoch = len(data.y_train) // len(batches[0])
    fast = contender.ferroptim(len(batches), steps_per_epoch)
    slow = contender.numpy(len(batches), steps_per_epoch)
    a = {name: p.copy() for name, p in initial.items()}
    b = {name: p.copy() for name, p in initial.items()}
    for batch in batches[:CHECK_STEPS]:
        grads = loss_and_gradients(a, data.x_train[batch], data.y_train[batch])[1]
        fast.apply(grads, a)
        slow.apply(grads, b)
    return relative_difference(a, b)


def compare(
    contender: Contender, initial: Params, data: Digits, args: argparse.Namespace
) -> Result:
    """Check that `contender`'s two forms are the same rule (`first_steps_apart`, raising if
    they end more than `MAX_EPS` apart), then train each on the same batches from
    `initial`."""
    batches = batch_order(len(data.y_train), args.epochs, args.batch_size, args.seed)
    apart = first_steps_apart(contender, initial, data, batches)
    if apart > MAX_EPS:
        raise AssertionError(
            f"{contender.name}: given the same gradients for {CHECK_STEPS} steps, ferroptim and "
            f"the NumPy rule end {apart:.3g} float32 epsilons apart: not the same rule."
        )
    steps_per_epoch = len(data.y_train) // args.batch_size
    runs = [
        train(make(len(batches), steps_per_epoch), initial, data, batches, steps_per_epoch)
        for make in (contender.ferroptim, contender.numpy)
    ]
    return Result(contender, runs[0], runs[1], apart)


# --- the report ----------------------------------------------------------------------------------


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| optimizer | train loss | test loss | test accuracy | ferroptim us/step "
        "| NumPy us/step | speed-up | NumPy run |",
        "|:---|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for r in results:
        fast, slow = r.ferroptim.step_us, r.numpy.step_us
        if same_bits(r.ferroptim.params, r.numpy.params):
            numpy_run = "the same bits"
        else:
            numpy_run = f"test accuracy {r.numpy.accuracy[-1]:.4f}"
        lines.append(
            f"| {r.name} | {r.ferroptim.train_loss[-1]:.3g} | {r.ferroptim.test_loss[-1]:.4f} "
            f"| {r.ferroptim.accuracy[-1]:.4f} | {fast:.1f} | {slow:.1f} | {slow / fast:.1f}x "
            f"| {numpy_run} |"
        )
    return "\n".join(lines)


def plot(results: Sequence[Result], path: pathlib.Path, title: str) -> None:
    """Three panels: the training loss and the test accuracy after each epoch (ferroptim's
    runs), and the time per optimizer step with ferroptim and with NumPy."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: a PNG without a display or pyplot's global state
    loss_axes, accuracy_axes, time_axes = fig.subplots(1, 3)
    for r in results:
        epochs = np.arange(len(r.ferroptim.train_loss))
        line = r.contender.line
        loss_axes.plot(epochs, r.ferroptim.train_loss, line, label=r.name)
        accuracy_axes.plot(epochs[1:], r.ferroptim.accuracy[1:], line, label=r.name)
    loss_axes.set(yscale="log", xlabel="epoch", ylabel="cross-entropy (training set)")
    loss_axes.set_title("training loss")
    loss_axes.legend(fontsize="small")
    # The last epochs' differences are what is worth seeing; the first epochs may fall below.
    lowest = min(r.ferroptim.accuracy[-1] for r in results)
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (test set)", ylim=(lowest - 0.1, 1.0))
    accuracy_axes.set_title("test accuracy")
    positions = np.arange(len(results))
    width = 0.4
    time_axes.bar(positions - width / 2, [r.ferroptim.step_us for r in results], width)
    time_axes.bar(positions + width / 2, [r.numpy.step_us for r in results], width)
    time_axes.legend(["ferroptim", "NumPy by hand"], fontsize="small")
    time_axes.set_xticks(positions, [r.name for r in results], rotation=30, ha="right")
    time_axes.set(ylabel="microseconds (median)")
    time_axes.set_title("time per optimizer step")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line (`argv`, or `sys.argv[1:]` for None), defaults filled in."""
    parser = argparse.ArgumentParser(
        description="Train a digits MLP with six ferroptim optimizers, and time each against "
        "the same loop with the optimizer written in NumPy.",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (3 with --small)")
    parser.add_argument("--hidden", type=int, default=None, help="default 64 (32 with --small)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument(
        "--plot",
        nargs="?",
        const=str(DEFAULT_PLOT),
        default=None,
        metavar="FILE",
        help="write the curves to this PNG (docs/images/digits_optimizers.png if no FILE)",
    )
    parser.add_argument("--small", action="store_true", help="a run of seconds, for CI")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 3 if args.small else 30
    if args.hidden is None:
        args.hidden = 32 if args.small else 64
    if args.epochs < 1 or args.hidden < 1 or args.batch_size < 1:
        parser.error("--epochs, --hidden and --batch-size must be positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, Any]]:
    """Train every contender both ways, print the table, write the plot if asked, and return
    each contender's final metrics and step times by name."""
    args = parse_args(argv)
    data = load_data()
    steps = len(data.y_train) // args.batch_size * args.epochs
    if steps <= CHECK_STEPS:
        raise ValueError(f"The run must be longer than {CHECK_STEPS} steps (it has {steps}).")
    initial = init_params(data.x_train.shape[1], args.hidden, np.random.default_rng(args.seed))
    print(
        f"{len(data.y_train)} training and {len(data.y_test)} test images, hidden {args.hidden}, "
        f"batch {args.batch_size}, {args.epochs} epochs ({steps} steps), "
        f"{sum(p.size for p in initial.values())} parameters, seed {args.seed}",
        flush=True,
    )
    results = []
    for contender in CONTENDERS:
        results.append(compare(contender, initial, data, args))
        print(f"{contender.name}: done", flush=True)
    print(table(results))
    if args.plot is not None:
        title = (
            f"digits, MLP 64-{args.hidden}-10, batch {args.batch_size}, same initial weights "
            "and batches for every optimizer"
        )
        plot(results, pathlib.Path(args.plot), title)
        print(f"plot written to {args.plot}")
    return {
        r.name: {
            "train_loss": r.ferroptim.train_loss[-1],
            "first_train_loss": r.ferroptim.train_loss[0],
            "test_loss": r.ferroptim.test_loss[-1],
            "accuracy": r.ferroptim.accuracy[-1],
            "numpy_accuracy": r.numpy.accuracy[-1],
            "ferroptim_us": r.ferroptim.step_us,
            "numpy_us": r.numpy.step_us,
            "first_steps_apart": r.first_steps,
            "same_bits": same_bits(r.ferroptim.params, r.numpy.params),
        }
        for r in results
    }


if __name__ == "__main__":
    main()

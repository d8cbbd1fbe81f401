"""examples/digits_optimizers.py and examples/checkpoint_resume.py, run as CI runs them (`main`
with `--small` and a plot in a temporary directory), held to what their docstrings say:

- digits_optimizers: every optimizer learns the digits; its plot is a 1200 x 400 PNG; the
  NumPy rules written in the example are ferroptim's rules, bit for bit, but for the schedule's
  rounding; the backward pass it trains with is the gradient of its loss (finite differences
  of a loss written here, in float64).
- checkpoint_resume: the run resumed from its checkpoint is the uninterrupted run, bit for bit
  (losses, parameters, optimizer variables, the EMA weights' accuracy), while a fresh optimizer
  from the same checkpoint is not; the checkpoint on disk holds the state of its step; its plot
  is a 1200 x 400 PNG.
"""

import importlib
import itertools
import math
import pathlib
import sys

import numpy as np
import pytest
from matplotlib import image

import ferroptim as fo

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
DOCS_IMAGES = EXAMPLES.parent / "docs" / "images"
# Both figures are 12 x 4 inches at 100 dots per inch: rows, columns, RGBA.
PNG_SHAPE = (400, 1200, 4)
N_TEST = 359  # the digits' fixed test split
# --small: 3 epochs of the digits optimizers, 4 of the checkpoint example, batches of 32.
STEPS_PER_EPOCH = 1438 // 32


def load(name):
    """The example module `name`. Each imports its model from digits_distributed.py beside it,
    as it does when run as a script from its directory, so that directory goes on the path."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def assert_png(path):
    """`path` is a PNG that matplotlib reads back as an image of `PNG_SHAPE`, not blank."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(path)
    assert pixels.shape == PNG_SHAPE
    # Lines and text on a white background: many colours, and far from all white.
    colours = np.unique(pixels.reshape(-1, 4), axis=0)
    assert len(colours) > 50
    assert 0.05 < float(np.mean(pixels[..., :3] < 0.9)) < 0.5


# --- examples/digits_optimizers.py ---------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(the returned metrics, the plot's path) of one --small run."""
    path = tmp_path_factory.mktemp("digits_optimizers") / "curves.png"
    return load("digits_optimizers").main(["--small", "--plot", str(path)]), path


FIXED_RATE = ["SGD", "Adam", "AdamW", "RMSprop", "Lion"]
SCHEDULED = "Adam + cosine"


def test_every_optimizer_learns_the_digits(digits):
    metrics, _ = digits
    assert list(metrics) == FIXED_RATE + [SCHEDULED]
    for name, m in metrics.items():
        # Ten classes: chance is 0.1 and an untrained network's loss about log(10) = 2.3.
        assert m["first_train_loss"] > 2.0, name
        assert m["train_loss"] < 0.6 * m["first_train_loss"], name
        assert m["accuracy"] > 0.5, name
    # After 3 epochs (0.95 and 0.91 at seed 0; Lion, at a tenth of SGD's rate, is the slowest).
    assert metrics["SGD"]["accuracy"] > 0.9
    assert metrics[SCHEDULED]["accuracy"] > 0.85


def test_the_numpy_rules_are_ferroptims(digits):
    metrics, _ = digits
    for name in FIXED_RATE:
        # The same bits after the first steps on the same gradients, and after the whole run.
        assert metrics[name]["first_steps_apart"] == 0.0, name
        assert metrics[name]["same_bits"], name
        assert metrics[name]["numpy_accuracy"] == metrics[name]["accuracy"], name
    # The schedule's rates differ in their last bit at some steps: rounding, then drift.
    scheduled = metrics[SCHEDULED]
    assert scheduled["first_steps_apart"] <= load("digits_optimizers").MAX_EPS
    assert abs(scheduled["numpy_accuracy"] - scheduled["accuracy"]) <= 3 / N_TEST
    for m in metrics.values():
        assert 0 < m["ferroptim_us"] < 1e5 and 0 < m["numpy_us"] < 1e5


def test_the_numpy_schedule_is_cosine_decay():
    rate = load("digits_optimizers").warmup_cosine(3e-3, 40, 100)
    schedule = fo.optimizers.schedules.CosineDecay(
        0.0, decay_steps=100, warmup_target=3e-3, warmup_steps=40
    )
    for step in range(0, 150):
        # ferroptim computes in float32, the example in double: a few float32 roundings of the
        # peak rate apart (an epsilon is 1.2e-7; 1 + cos loses relative precision at the end).
        assert abs(rate(step) - float(schedule(step))) <= 3e-3 * 1e-6, step
    assert rate(0) == 0.0 and rate(40) == 3e-3 and rate(140) == rate(1000) == 0.0


def test_the_digits_plot_is_a_png(digits):
    assert_png(digits[1])


@pytest.mark.parametrize("name", ["digits_optimizers", "checkpoint_resume"])
def test_plot_without_a_file_writes_the_documentation_image(name):
    parse_args = load(name).parse_args
    assert parse_args(["--plot"]).plot == str(DOCS_IMAGES / f"{name}.png")
    assert parse_args(["--plot", "x.png"]).plot == "x.png"
    assert parse_args([]).plot is None


def reference_loss(params, x, y):
    """The mean softmax cross-entropy of the MLP, in float64, one example at a time."""
    total = 0.0
    for row, label in zip(x, y):
        hidden = np.maximum(row @ params["hidden/kernel"] + params["hidden/bias"], 0.0)
        logits = hidden @ params["output/kernel"] + params["output/bias"]
        largest = float(np.max(logits))
        total += largest + math.log(float(np.sum(np.exp(logits - largest)))) - logits[label]
    return total / len(y)


def test_the_gradients_match_finite_differences():
    example = load("digits_optimizers")
    data = example.load_data()
    rng = np.random.default_rng(3)
    params = {
        "hidden/kernel": rng.standard_normal((64, 5)) * 0.3,
        "hidden/bias": rng.standard_normal(5) * 0.1,
        "output/kernel": rng.standard_normal((5, 10)) * 0.5,
        "output/bias": rng.standard_normal(10) * 0.1,
    }
    # float64 throughout, so that the differences measure the formula and not float32.
    x, y = data.x_train[:8].astype(np.float64), data.y_train[:8]
    loss, grads = example.loss_and_gradients(params, x, y)
    assert loss == pytest.approx(reference_loss(params, x, y), rel=1e-12)
    h = 1e-6
    for name, p in params.items():
        assert grads[name].shape == p.shape
        numeric = np.zeros_like(p)
        for index in itertools.product(*map(range, p.shape)):
            original = p[index]
            p[index] = original + h
            up = reference_loss(params, x, y)
            p[index] = original - h
            down = reference_loss(params, x, y)
            p[index] = original
            numeric[index] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)
    # Rows of constant pixels (zero after standardization) have exactly zero gradient: the
    # comparison above is not all zeros.
    assert np.count_nonzero(grads["hidden/kernel"]) > 200


# --- examples/checkpoint_resume.py ---------------------------------------------------------------


@pytest.fixture(scope="module")
def resume(tmp_path_factory):
    """(the returned summary, the plot's path, the checkpoint directory) of one --small run."""
    folder = tmp_path_factory.mktemp("checkpoint_resume")
    arguments = ["--small", "--plot", str(folder / "resume.png")]
    summary = load("checkpoint_resume").main(arguments + ["--checkpoint-dir", str(folder / "ck")])
    return summary, folder / "resume.png", folder / "ck"


def same_bits(a, b):
    return len(a) == len(b) and all(
        np.asarray(x).dtype == np.asarray(y).dtype
        and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(a, b)
    )


def test_the_resumed_run_is_the_uninterrupted_run_bit_for_bit(resume):
    summary, _, _ = resume
    runs = summary["runs"]
    whole, resumed = runs["whole"], runs["resumed"]
    steps = 4 * STEPS_PER_EPOCH
    # Stopped at 45% of the run (step 79), resumed from the checkpoint before it (every 25).
    assert summary["steps"] == steps
    assert summary["crash_step"] == round(0.45 * steps) == 79
    assert summary["checkpoint_step"] == resumed.start == 75
    assert summary["interrupted_losses"] == whole.losses[:79]
    assert summary["bitwise"]
    assert len(whole.losses) == len(resumed.losses) == steps
    assert whole.losses == resumed.losses
    assert same_bits(list(whole.params.values()), list(resumed.params.values()))
    assert whole.opt.variable_names == resumed.opt.variable_names
    assert same_bits(whole.opt.variables, resumed.opt.variables)
    assert whole.opt.iterations == resumed.opt.iterations == steps
    # The state that makes this a real test: EMA averages, Adam's moments, a schedule.
    names = whole.opt.variable_names
    assert any("average" in n for n in names) and any("velocity" in n for n in names)
    assert summary["resumed_accuracy"] == summary["accuracy"] > 0.85


def test_a_fresh_optimizer_from_the_checkpoint_is_another_run(resume):
    summary, _, _ = resume
    whole, fresh = summary["runs"]["whole"], summary["runs"]["fresh"]
    start = summary["checkpoint_step"]
    # The same losses up to the checkpoint (its history), different ones from the first step
    # on: the schedule starts its warmup again at a rate of 0.
    assert fresh.losses[:start] == whole.losses[:start]
    assert fresh.rates[0] == 0.0 != whole.rates[start]
    assert fresh.losses[start + 1] != whole.losses[start + 1]
    assert not summary["fresh_same_bits"]
    assert not same_bits(list(whole.params.values()), list(fresh.params.values()))


def test_the_checkpoint_on_disk_holds_its_steps_state(resume):
    summary, _, folder = resume
    example = load("checkpoint_resume")
    start = summary["checkpoint_step"]
    whole = summary["runs"]["whole"]
    params = {name: np.zeros_like(p) for name, p in whole.params.items()}
    opt = fo.optimizers.Optimizer.load(folder / "optimizer.fo", params)
    assert isinstance(opt, fo.optimizers.AdamW)
    assert opt.iterations == start
    assert float(opt.learning_rate) == whole.rates[start]
    # Replayed here: the first `start` steps of a fresh run give the file's bits.
    data = example.load_data()
    batches = example.batch_order(len(data.y_train), 4, 32, 0)
    init = example.init_params(64, 32, np.random.default_rng(0))
    replay = example.Run(init, example.make_optimizer(4 * STEPS_PER_EPOCH, STEPS_PER_EPOCH))
    example.train(replay, data, batches[:start])
    assert same_bits(list(params.values()), list(replay.params.values()))
    assert same_bits(opt.variables, replay.opt.variables)
    with np.load(folder / "history.npz") as history:
        assert history["losses"].tolist() == whole.losses[:start]


def test_the_resume_plot_is_a_png(resume):
    assert_png(resume[1])


def test_a_crash_before_the_first_checkpoint_is_refused():
    with pytest.raises(ValueError, match="after the first checkpoint"):
        load("checkpoint_resume").main(["--small", "--crash-at", "10"])

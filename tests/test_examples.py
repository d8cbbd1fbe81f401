"""The examples (examples/*.py, loaded by path) run, learn what they say they learn, and compute
their gradients right."""

import importlib.util
import itertools
import math
import pathlib
import sys

import numpy as np
import pytest

import ferroptim as fo

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def load_example(name):
    module_name = f"example_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs: a dataclass looks its module up by name.
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def test_the_mlp_example_learns():
    # The variance of the target is about 0.43: a trained network must do far better.
    assert load_example("train_mlp").main(steps=300) < 0.05


# --- examples/word2vec.py -----------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam-lazy", "adam", "sgd", "adagrad"])
def test_word2vec_learns_the_topics(optimizer):
    metrics = load_example("word2vec").main(["--small", "--optimizer", optimizer])
    # Ten topics: a tenth of random neighbours share a word's topic. The trained vectors put
    # mostly words of the same topic next to each other (0.75 to 0.95 on this seed).
    assert 0.09 < metrics["chance"] < 0.11
    assert metrics["topic_accuracy"] > 0.6
    assert metrics["topic_accuracy_frequent"] > 0.9
    # From (1 + 5) log 2 = 4.16 with zero output vectors, to about 2.6.
    assert metrics["first_loss"] == pytest.approx(6 * math.log(2), rel=1e-6)
    assert metrics["final_loss"] < 0.7 * metrics["first_loss"]


def test_word2vec_is_deterministic_given_the_seed():
    main = load_example("word2vec").main
    timing = {"ms_per_step", "apply_ms_per_step"}

    def run(seed):
        metrics = main(["--small", "--max-steps", "40", "--seed", str(seed)])
        return {k: v for k, v in metrics.items() if k not in timing}

    first = run(1)
    assert first["steps"] == 40
    assert run(1) == first
    assert run(2)["final_loss"] != first["final_loss"]


def reference_loss(w_in, w_out, centres, contexts, negatives):
    """The negative-sampling loss summed over the pairs, one pair at a time in float64:
    -log sigmoid(x) = log(1 + exp(-x))."""
    total = 0.0
    for c, o, words in zip(centres, contexts, negatives):
        v = w_in[c]
        total += math.log1p(math.exp(-float(w_out[o] @ v)))
        for n in words:
            total += math.log1p(math.exp(float(w_out[n] @ v)))
    return total


def test_word2vec_gradients_match_finite_differences():
    w2v = load_example("word2vec")
    rng = np.random.default_rng(7)
    params = {"W_in": rng.standard_normal((6, 3)), "W_out": rng.standard_normal((6, 3))}
    # Repeated centres, a context that is also a negative, a word that is a centre and a
    # context, a negative twice in one pair.
    centres = np.array([0, 2, 0, 5])
    contexts = np.array([1, 1, 3, 0])
    negatives = np.array([[2, 4], [1, 1], [0, 5], [3, 2]])
    loss, grads = w2v.loss_and_grads(params, centres, contexts, negatives)
    args = (centres, contexts, negatives)
    assert loss == pytest.approx(reference_loss(params["W_in"], params["W_out"], *args), rel=1e-12)

    # One row per use, left for the optimizer to sum.
    assert isinstance(grads["W_in"], fo.IndexedSlices)
    assert sorted(grads["W_in"].indices) == sorted(centres)
    assert sorted(grads["W_out"].indices) == sorted(np.concatenate([contexts, negatives.ravel()]))
    h = 1e-6
    for name, table in params.items():
        numeric = np.zeros_like(table)
        for i, j in itertools.product(*map(range, table.shape)):
            shifted = {k: v.copy() for k, v in params.items()}
            shifted[name][i, j] += h
            up = reference_loss(shifted["W_in"], shifted["W_out"], *args)
            shifted[name][i, j] -= 2 * h
            down = reference_loss(shifted["W_in"], shifted["W_out"], *args)
            numeric[i, j] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[name].to_dense(), numeric, rtol=1e-6, atol=1e-8)


def test_word2vec_pairs_of_a_one_word_window():
    w2v = load_example("word2vec")
    ids = np.array([4, 1, 1, 7, 3, 9, 2])
    sentence = np.array([0, 0, 0, 1, 1, 1, 2])
    centres, contexts = w2v.skipgram_pairs(ids, sentence, 1, np.random.default_rng(0))
    # Each word with its neighbours in its sentence, both ways round.
    expected = [(4, 1), (1, 4), (1, 1), (1, 1), (7, 3), (3, 7), (3, 9), (9, 3)]
    assert sorted(zip(centres.tolist(), contexts.tolist())) == sorted(expected)

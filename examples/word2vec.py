"""Word vectors (word2vec's skip-gram with negative sampling) trained in plain NumPy with ferroptim.

Embedding tables are where row-sparse gradients come from: a batch of pairs reads a few rows
of each table, many of them several times, and its gradient is zero on the other rows (at the
default settings a batch of 1024 pairs with 5 negative words each uses about 700 of the 9339
rows of the input vectors, 3100 of the output vectors). The backward pass here returns the
gradients as `ferroptim.IndexedSlices` (the rows it read and their values, a row listed once
per use), and `opt.apply` sums the repeated rows and updates the tables in place.
`--optimizer` picks the update:

    adam-lazy  Adam(lazy=True), the default: only the batch's rows and their moments change
               (the algorithm of TensorFlow Addons' LazyAdam and PyTorch's SparseAdam).
    adam       Adam as Keras computes it: the step on the dense gradient, whose moments decay
               on every row, so each step passes over the whole of both tables.
    sgd        SGD, word2vec's own update (a zero gradient leaves a row as it is, so only the
               batch's rows are touched).
    adagrad    Adagrad (only the batch's rows are touched, as for SGD).

The corpus is generated here, with a known answer: a language whose content words each belong
to one topic, whose sentences each speak of one topic, with Zipf-distributed word frequencies
and a few topic-free function words ("the", "of") everywhere. A word's nearest neighbours in the
learned vectors should be words of its topic: the example reports the fraction that are, next to
what random vectors would score, with the training loss and the time per step.

At the default sizes most of a step is NumPy's forward and backward pass. `adam` passes over
both whole tables at each step, `adam-lazy` over the batch's rows only: the difference grows
with the vocabulary (try `--vocab-size 100000 --tokens 2000000 --max-steps 1000`).

    python examples/word2vec.py                      # 20 to 30 seconds
    python examples/word2vec.py --optimizer sgd
    python examples/word2vec.py --small              # a few seconds, as the tests run it
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

import ferroptim as fo

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.floating[Any]]
Params = Dict[str, Floats]

# --- The language -------------------------------------------------------------------------------

# Of a sentence's words, the fraction of function words and of words of any topic (noise); the
# rest are words of the sentence's topic.
FUNCTION_FRACTION = 0.3
NOISE_FRACTION = 0.3


@dataclass
class Language:
    """A synthetic language: `topic[w]` is word w's topic (-1 for a function word), and
    `weight[w]` its weight in the Zipf law the sentences draw from."""

    names: List[str]
    topic: Ints
    weight: Floats
    n_topics: int

    @classmethod
    def make(
        cls, n_words: int, n_topics: int, n_function: int, rng: np.random.Generator
    ) -> Language:
        """The `n_function` most frequent words are function words; the others are dealt to
        the topics in a random order, so that every topic has frequent and rare words."""
        # Zipf-Mandelbrot: the word of rank r has a weight proportional to 1 / (r + 2.7).
        weight = 1.0 / (np.arange(n_words) + 2.7)
        topic = np.full(n_words, -1, np.int64)
        topic[n_function:] = rng.permutation(n_words - n_function) % n_topics
        # Names that show the answer: "t07.3" is the fourth most frequent word of topic 7.
        names = [f"fn{w}" for w in range(n_function)]
        seen = [0] * n_topics
        for t in topic[n_function:]:
            names.append(f"t{t:02d}.{seen[t]}")
            seen[t] += 1
        return cls(names, topic, weight, n_topics)

    def sentences(self, n_tokens: int, rng: np.random.Generator) -> Tuple[Ints, Ints]:
        """`n_tokens` words of sentences of 5 to 20 words, each about one topic drawn at
        random. Returns the words and the sentence of each."""
        lengths = rng.integers(5, 21, size=n_tokens // 5 + 1)
        sentence = np.repeat(np.arange(len(lengths)), lengths)[:n_tokens]
        sentence_topic = rng.integers(0, self.n_topics, size=len(lengths))[sentence]

        def draw(words: Ints, where: npt.NDArray[np.bool_]) -> None:
            """Fills `tokens[where]` with `words` drawn by their weights."""
            cdf = np.cumsum(self.weight[words])
            u = rng.random(int(where.sum())) * cdf[-1]
            tokens[where] = words[np.searchsorted(cdf, u, side="right")]

        kind = rng.random(n_tokens)
        function = kind < FUNCTION_FRACTION
        noise = ~function & (kind < FUNCTION_FRACTION + NOISE_FRACTION)
        tokens = np.empty(n_tokens, np.int64)
        draw(np.flatnonzero(self.topic < 0), function)
        draw(np.flatnonzero(self.topic >= 0), noise)
        for t in range(self.n_topics):
            draw(np.flatnonzero(self.topic == t), ~function & ~noise & (sentence_topic == t))
        return tokens, sentence


# --- The vocabulary, the training pairs and the negative samples --------------------------------


@dataclass
class Vocabulary:
    """The words seen at least `min_count` times, most frequent first: `words[i]` is the
    language's word of vocabulary index i, `counts[i]` its count in the corpus."""

    words: Ints
    counts: Ints

    @classmethod
    def build(cls, tokens: Ints, n_words: int, min_count: int) -> Vocabulary:
        counts = np.bincount(tokens, minlength=n_words)
        words = np.flatnonzero(counts >= max(min_count, 1))
        words = words[np.argsort(-counts[words], kind="stable")]
        return cls(words, counts[words])

    def encode(self, tokens: Ints, sentence: Ints) -> Tuple[Ints, Ints]:
        """The tokens as vocabulary indices, and their sentences; words out of the vocabulary
        are dropped (as word2vec does)."""
        index = np.full(int(tokens.max()) + 1, -1, np.int64)
        index[self.words] = np.arange(len(self.words))
        ids = index[tokens]
        return ids[ids >= 0], sentence[ids >= 0]


def subsample(
    ids: Ints, sentence: Ints, counts: Ints, threshold: float, rng: np.random.Generator
) -> Tuple[Ints, Ints]:
    """word2vec's subsampling of frequent words: a word of frequency f is kept with probability
    (sqrt(f / threshold) + 1) * threshold / f, so that "the" does not fill every window."""
    if threshold <= 0:
        return ids, sentence
    f = counts / counts.sum()
    keep = (np.sqrt(f / threshold) + 1) * threshold / f
    kept = rng.random(len(ids)) < keep[ids]
    return ids[kept], sentence[kept]


def skipgram_pairs(
    ids: Ints, sentence: Ints, window: int, rng: np.random.Generator
) -> Tuple[Ints, Ints]:
    """Every (centre, context) pair of words of a sentence with the context in the centre's
    window, in a random order. As in word2vec each centre draws its window's width from 1 to
    `window`, which weights near contexts more than far ones."""
    width = rng.integers(1, window + 1, size=len(ids))
    centres: List[Ints] = []
    contexts: List[Ints] = []
    for d in range(1, window + 1):
        same = sentence[:-d] == sentence[d:]
        after = same & (width[:-d] >= d)  # the context is d words after the centre
        before = same & (width[d:] >= d)  # the context is d words before the centre
        centres += [ids[:-d][after], ids[d:][before]]
        contexts += [ids[d:][after], ids[:-d][before]]
    order = rng.permutation(sum(len(c) for c in centres))
    return np.concatenate(centres)[order], np.concatenate(contexts)[order]


class NegativeSampler:
    """Draws "noise" words from the unigram distribution raised to the power 0.75 (word2vec's),
    which gives rare words more chances than their frequency would."""

    def __init__(self, counts: Ints, rng: np.random.Generator, power: float = 0.75):
        self._cdf = np.cumsum(counts.astype(np.float64) ** power)
        self._rng = rng

    def __call__(self, shape: Tuple[int, ...]) -> Ints:
        u = self._rng.random(shape) * self._cdf[-1]
        words: Ints = np.searchsorted(self._cdf, u, side="right").astype(np.int64)
        return words


# --- The model ----------------------------------------------------------------------------------


def init_params(vocab_size: int, dim: int, rng: np.random.Generator) -> Params:
    """word2vec's initialization: small random input vectors, zero output vectors."""
    return {
        "W_in": ((rng.random((vocab_size, dim)) - 0.5) / dim).astype(np.float32),
        "W_out": np.zeros((vocab_size, dim), np.float32),
    }


def log_sigmoid(x: Floats) -> Floats:
    """log(1 / (1 + exp(-x))), without overflow for large |x|."""
    return -np.logaddexp(0, -x)


def sigmoid(x: Floats) -> Floats:
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    y: Floats = 0.5 * (np.tanh(0.5 * x) + 1)
    return y


def loss_and_grads(
    params: Params, centres: Ints, contexts: Ints, negatives: Ints
) -> Tuple[float, Dict[str, fo.IndexedSlices]]:
    """The negative-sampling loss of a batch of pairs, and its gradients as row-sparse ones.

    For a centre word with input vector v (its row of `W_in`), its context word and k negative
    words with output vectors u_o and u_1..u_k (rows of `W_out`), the loss is

        -log sigmoid(u_o . v) - sum_j log sigmoid(-u_j . v)

    summed over the batch's pairs (word2vec updates once per pair, so SGD's learning rate here is
    word2vec's, 0.025, whatever the batch size; the loss printed is per pair). The gradient of
    `W_in` has one row per centre, that of `W_out` one row per context and per negative: a word
    used several times in the batch has several rows, which the optimizer sums.

    Args:
        params: `{"W_in": ..., "W_out": ...}`, two `(vocabulary, dim)` tables.
        centres, contexts: `(batch,)` vocabulary indices.
        negatives: `(batch, k)` vocabulary indices.
    """
    w_in, w_out = params["W_in"], params["W_out"]
    targets = np.concatenate([contexts[:, None], negatives], axis=1)  # (batch, 1 + k)
    v = w_in[centres]  # (batch, dim)
    u = w_out[targets]  # (batch, 1 + k, dim)
    scores = np.einsum("bd,bjd->bj", v, u)
    # The context is a positive example (label +1), the negatives are negative ones (-1).
    label = np.ones(targets.shape[1], scores.dtype)
    label[1:] = -1
    loss = -float(log_sigmoid(label * scores).sum())
    d_scores = -label * sigmoid(-label * scores)  # d loss / d scores
    d_v = np.einsum("bj,bjd->bd", d_scores, u)
    d_u = d_scores[:, :, None] * v[:, None, :]
    grads = {
        "W_in": fo.IndexedSlices(d_v, centres, w_in.shape),
        "W_out": fo.IndexedSlices(d_u.reshape(-1, w_out.shape[1]), targets.ravel(), w_out.shape),
    }
    return loss, grads


# --- The evaluation -----------------------------------------------------------------------------


def nearest_neighbours(vectors: Floats, queries: Ints, k: int) -> Ints:
    """The `k` words of highest cosine similarity with each query word (itself excluded),
    nearest first."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    result = np.empty((len(queries), k), np.int64)
    block = 1024  # query rows at a time, to keep the similarity matrix small
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        sim = unit[q] @ unit.T
        sim[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
        result[start : start + len(q)] = np.take_along_axis(top, order, axis=1)
    return result


def topic_accuracy(vectors: Floats, topic: Ints, k: int) -> Tuple[npt.NDArray[np.float64], float]:
    """For each content word (most frequent first), the fraction of its `k` nearest neighbours
    that share its topic; and the mean of that fraction for neighbours drawn at random."""
    queries = np.flatnonzero(topic >= 0)
    neighbours = nearest_neighbours(vectors, queries, k)
    accuracy = (topic[neighbours] == topic[queries, None]).mean(axis=1)
    topic_size = np.bincount(topic[queries])
    chance = float(((topic_size[topic[queries]] - 1) / (len(topic) - 1)).mean())
    return accuracy, chance


# --- Training -----------------------------------------------------------------------------------

OPTIMIZERS = ("adam-lazy", "adam", "sgd", "adagrad")
LEARNING_RATES = {"adam-lazy": 3e-3, "adam": 3e-3, "sgd": 0.025, "adagrad": 0.05}


def make_optimizer(name: str, learning_rate: float) -> fo.optimizers.Optimizer:
    if name == "adam-lazy":
        return fo.optimizers.Adam(learning_rate=learning_rate, lazy=True)
    if name == "adam":
        return fo.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return fo.optimizers.SGD(learning_rate=learning_rate)
    if name == "adagrad":
        return fo.optimizers.Adagrad(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


# The defaults of `--small`: a few seconds of training, embeddings still well above chance.
SMALL = dict(vocab_size=1000, topics=10, tokens=60_000, dim=32, batch_size=256, epochs=2)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train word vectors (skip-gram, negative sampling) on a synthetic corpus."
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam-lazy")
    parser.add_argument(
        "--learning-rate", type=float, help=f"default: per optimizer, {LEARNING_RATES}"
    )
    parser.add_argument("--epochs", type=int, default=3, help="passes over the corpus")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, default=1024, help="pairs per step")
    parser.add_argument("--dim", type=int, default=64, help="length of a word vector")
    parser.add_argument("--window", type=int, default=5, help="largest context distance")
    parser.add_argument("--negatives", type=int, default=5, help="negative words per pair")
    parser.add_argument("--subsample", type=float, default=1e-3, help="0 disables it")
    parser.add_argument("--vocab-size", type=int, default=10_000, help="words of the language")
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=500_000, help="length of the corpus")
    parser.add_argument("--min-count", type=int, default=5, help="rarer words are dropped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=500, help="steps between loss lines")
    parser.add_argument(
        "--small",
        action="store_true",
        help="smaller defaults, for a run of a few seconds: "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in SMALL.items()),
    )
    args = parser.parse_args(argv)
    if args.small:
        # The options given still override these defaults.
        parser.set_defaults(**SMALL)
        args = parser.parse_args(argv)
    return args


def train(
    args: argparse.Namespace,
    params: Params,
    ids: Ints,
    sentence: Ints,
    counts: Ints,
    rng: np.random.Generator,
) -> Tuple[List[float], float, float]:
    """Trains `params` in place on the corpus `ids` (vocabulary indices, with the sentence of
    each; `counts[i]` is the count of word i) with the settings `args`. Returns the loss per
    pair of each step, the seconds spent in the steps and, of those, in `opt.apply`."""
    learning_rate = args.learning_rate
    if learning_rate is None:
        learning_rate = LEARNING_RATES[args.optimizer]
    opt = make_optimizer(args.optimizer, learning_rate)
    draw_negatives = NegativeSampler(counts, rng)
    losses: List[float] = []
    step_time = apply_time = 0.0
    logged = 0  # the steps whose loss has been printed
    for epoch in range(args.epochs):
        # A new subsample, new window widths and a new order at each epoch, as in word2vec.
        centres, contexts = skipgram_pairs(
            *subsample(ids, sentence, counts, args.subsample, rng), args.window, rng
        )
        n_batches = len(centres) // args.batch_size
        for b in range(n_batches):
            batch = slice(b * args.batch_size, (b + 1) * args.batch_size)
            t0 = time.perf_counter()
            loss, grads = loss_and_grads(
                params,
                centres[batch],
                contexts[batch],
                draw_negatives((args.batch_size, args.negatives)),
            )
            t1 = time.perf_counter()
            opt.apply(grads, params)
            t2 = time.perf_counter()
            step_time += t2 - t0
            apply_time += t2 - t1
            losses.append(loss / args.batch_size)
            step = len(losses)
            if step % args.log_every == 0 or b == n_batches - 1 or step == args.max_steps:
                print(
                    f"epoch {epoch}  step {step:5d}  loss {np.mean(losses[logged:]):.4f}  "
                    f"{1e3 * step_time / step:.2f} ms/step "
                    f"({1e3 * apply_time / step:.2f} in opt.apply)"
                )
                logged = step
            if step == args.max_steps:
                return losses, step_time, apply_time
    return losses, step_time, apply_time


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Generates the corpus, trains the word vectors, prints the loss as it goes and the
    evaluation at the end. Returns the final metrics."""
    args = parse_args(argv)
    # Independent streams: the corpus and the initial vectors do not depend on the optimizer.
    corpus_rng, init_rng, train_rng = map(
        np.random.default_rng, np.random.SeedSequence(args.seed).spawn(3)
    )
    language = Language.make(args.vocab_size, args.topics, n_function=20, rng=corpus_rng)
    tokens, sentence = language.sentences(args.tokens, corpus_rng)
    vocab = Vocabulary.build(tokens, args.vocab_size, args.min_count)
    print(
        f"corpus: {len(tokens)} words in {sentence[-1] + 1} sentences; vocabulary: "
        f"{len(vocab.words)} of the {args.vocab_size} words (those seen {args.min_count} times "
        f"or more), {args.topics} topics; optimizer: {args.optimizer}"
    )
    ids, sentence = vocab.encode(tokens, sentence)
    params = init_params(len(vocab.words), args.dim, init_rng)
    losses, step_time, apply_time = train(args, params, ids, sentence, vocab.counts, train_rng)

    topic = language.topic[vocab.words]
    accuracy, chance = topic_accuracy(params["W_in"], topic, k=10)
    thirds = [float(a.mean()) for a in np.array_split(accuracy, 3)]
    print(
        f"topic accuracy of the 10 nearest neighbours: {accuracy.mean():.3f} (chance "
        f"{chance:.3f}); by frequency, most frequent third first: "
        + ", ".join(f"{a:.3f}" for a in thirds)
    )
    names = [language.names[w] for w in vocab.words]
    content = np.flatnonzero(topic >= 0)
    shown = np.concatenate([content[:3], content[-1:]])  # three frequent words and a rare one
    for w, row in zip(shown, nearest_neighbours(params["W_in"], shown, 8)):
        print(f"{names[w]:>9} ({vocab.counts[w]:5d} times):  " + " ".join(names[n] for n in row))
    tail = losses[-min(100, len(losses)) :]
    return {
        "steps": float(len(losses)),
        "first_loss": losses[0],
        "final_loss": float(np.mean(tail)),
        "topic_accuracy": float(accuracy.mean()),
        "topic_accuracy_frequent": thirds[0],
        "topic_accuracy_rare": thirds[2],
        "chance": chance,
        "ms_per_step": 1e3 * step_time / len(losses),
        "apply_ms_per_step": 1e3 * apply_time / len(losses),
    }


if __name__ == "__main__":
    main()

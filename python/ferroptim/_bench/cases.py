"""Cases: the shapes (and names) of one step's parameter list, as `--sizes` spells them, and
the random arrays a case is timed on.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

DTYPE = np.float32

Arrays = List[np.ndarray]
Shape = Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Case:
    """A parameter list to step: a name for the table and the shape of every tensor.

    Args:
        name: how `--sizes` spells it and the table shows it.
        shapes: one shape per tensor.
        names: the tensors' names, as the variables of a Keras model are named (Muon sends
            the embeddings to its AdamW path by name), or None for Keras's names of a list
            (`variable_0`, `variable_1`, ...).
    """

    name: str
    shapes: Tuple[Shape, ...]
    names: Optional[Tuple[str, ...]] = None

    @property
    def elements(self) -> int:
        """Total number of parameter elements."""
        return sum(math.prod(shape) for shape in self.shapes)


def _mlp_variables() -> List[Tuple[str, Shape]]:
    sizes = [784, 256, 128, 10]
    variables: List[Tuple[str, Shape]] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        layer = "dense" if i == 0 else f"dense_{i}"
        variables += [(f"{layer}/kernel", (fan_in, fan_out)), (f"{layer}/bias", (fan_out,))]
    return variables


def _gpt2_small_variables() -> List[Tuple[str, Shape]]:
    # GPT-2's tensors (wte, wpe, then per block ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
    # mlp.c_proj, and ln_f) under the names of Keras layers: Embedding, LayerNormalization
    # (gamma, beta) and Dense (kernel, bias).
    d, ff, vocab, context, layers = 768, 3072, 50257, 1024, 12
    variables: List[Tuple[str, Shape]] = [
        ("token_embedding/embeddings", (vocab, d)),
        ("position_embedding/embeddings", (context, d)),
    ]
    for i in range(layers):
        block = f"transformer_layer_{i}"
        for layer, fan_in, fan_out in [
            ("ln_1", None, d),
            ("attn/c_attn", d, 3 * d),
            ("attn/c_proj", d, d),
            ("ln_2", None, d),
            ("mlp/c_fc", d, ff),
            ("mlp/c_proj", ff, d),
        ]:
            if fan_in is None:
                variables += [
                    (f"{block}/{layer}/gamma", (fan_out,)),
                    (f"{block}/{layer}/beta", (fan_out,)),
                ]
            else:
                variables += [
                    (f"{block}/{layer}/kernel", (fan_in, fan_out)),
                    (f"{block}/{layer}/bias", (fan_out,)),
                ]
    return variables + [("ln_f/gamma", (d,)), ("ln_f/beta", (d,))]


NAMED_CASES: Dict[str, Callable[[], List[Tuple[str, Shape]]]] = {
    "mlp": _mlp_variables,
    "gpt2": _gpt2_small_variables,
}

_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6}
_SIZE = re.compile(r"^(?:(\d+)x)?(\d+)([KM]?)$", re.IGNORECASE)
_MATRIX = re.compile(r"^(?:(\d+)x)?(\d+)\*(\d+)$", re.IGNORECASE)


def parse_case(text: str) -> Case:
    """A `--sizes` entry as a Case.

    Args:
        text: "mlp" (784-256-128-10, 6 tensors), "gpt2" (GPT-2 small, 148 tensors),
            "<n>" / "<n>K" / "<n>M" (one 1-D tensor; K = 10**3, M = 10**6 elements),
            "<rows>*<cols>" (one matrix), or either prefixed by "<count>x" (that many tensors
            of that size), e.g. "100x1K" or "4x768*768".
    """
    key = text.strip()
    if key.lower() in NAMED_CASES:
        names, shapes = zip(*NAMED_CASES[key.lower()]())
        return Case(key.lower(), tuple(shapes), tuple(names))
    matrix = _MATRIX.match(key)
    if matrix is not None and 0 not in {int(group or 1) for group in matrix.groups()}:
        count, rows, cols = (int(group or 1) for group in matrix.groups())
        return Case(key.lower(), ((rows, cols),) * count)
    match = _SIZE.match(key)
    if match is None or int(match.group(2)) == 0 or int(match.group(1) or 1) == 0:
        raise ValueError(
            f"Unknown size {text!r}: expected mlp, gpt2, <n>[K|M], <rows>*<cols> "
            f"or <count>x one of the last two, e.g. 32M, 100x1K or 768*3072."
        )
    count = int(match.group(1) or 1)
    size = int(match.group(2)) * _SUFFIXES[match.group(3).upper()]
    name = key.upper().replace("X", "x") if match.group(3) else key
    return Case(name, ((size,),) * count)


def make_arrays(case: Case, seed: int) -> Tuple[Arrays, Arrays]:
    """Random float32 parameters (standard normal) and gradients (scale 1e-2) for `case`.

    Args:
        case: the shapes.
        seed: the random seed.
    """
    rng = np.random.default_rng(seed)
    params, grads = [], []
    for shape in case.shapes:
        params.append(rng.standard_normal(shape, dtype=DTYPE))
        grad = rng.standard_normal(shape, dtype=DTYPE)
        grad *= 0.01
        grads.append(grad)
    return params, grads

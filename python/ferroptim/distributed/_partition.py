"""Which rank holds which elements of a model: the partition behind sharded optimizer state.

The variables of one dtype form one flat space, each variable's elements in its memory order
(C, or Fortran for a Fortran-ordered array) one after the other in build order. Each rank owns
one contiguous range of each space, of about 1/N of its elements; a range ends inside a
variable only where the variable may be split (an element-wise rule over a contiguous array),
and otherwise at one of its ends, so that a variable a rule needs whole is held whole by one
rank.

What a rank holds of each variable is its `Piece`: a range of the variable's flat elements, or
the whole variable as it is, or nothing. Every rank has a piece of every variable (possibly
empty), so an optimizer built on a rank's pieces has the structure of one built on the whole
model: the same variables in the same order, under the same names.
"""

from __future__ import annotations

from typing import Dict, List, Literal, Sequence, Tuple

import numpy as np

__all__ = ["Partition", "Piece", "flat_order"]


def flat_order(array: np.ndarray) -> Literal["C", "F"]:
    """The order in which a variable's elements are flattened: its memory order when it is
    Fortran-ordered, C otherwise (then its flat elements are a view when it is contiguous)."""
    flags = array.flags
    return "F" if flags.f_contiguous and not flags.c_contiguous else "C"


class Piece:
    """What one rank holds of one variable.

    Attributes:
        index: the variable's build index.
        start, stop: the range of its flat elements (see `flat_order`) held.
        whole: held whole, as the variable itself (its shape and layout), or not at all when
            `start == stop`; otherwise a 1-D view of the flat range.
    """

    __slots__ = ("index", "start", "stop", "whole")

    def __init__(self, index: int, start: int, stop: int, whole: bool):
        self.index = index
        self.start = start
        self.stop = stop
        self.whole = whole

    @property
    def size(self) -> int:
        return self.stop - self.start

    def view(self, variable: np.ndarray) -> np.ndarray:
        """The array the rank's optimizer is built on: a view of `variable` (written in place)
        or an empty array of the variable's dtype and number of axes."""
        if self.whole:
            if self.size == variable.size and variable.size > 0:
                return variable
            return np.empty((0,) * max(variable.ndim, 1), variable.dtype)
        flat = np.ravel(variable, order=flat_order(variable))
        return flat[self.start : self.stop]


class Partition:
    """The ranges of each dtype's flat space that each rank owns.

    Args:
        variables: the model's variables, in build order.
        size: the number of ranks.
        split: whether variables may be split between ranks (element-wise rules); a
            variable that is not contiguous, or has no axis, is never split.
    """

    def __init__(self, variables: Sequence[np.ndarray], size: int, split: bool):
        self.size = size
        self.dtypes: List[np.dtype] = []
        # Per variable: (dtype, its first element in the dtype's flat space, may it be split).
        self.place: List[Tuple[np.dtype, int, bool]] = []
        totals: Dict[np.dtype, int] = {}
        for v in variables:
            if v.dtype not in totals:
                self.dtypes.append(v.dtype)
                totals[v.dtype] = 0
            contiguous = v.flags.c_contiguous or v.flags.f_contiguous
            self.place.append((v.dtype, totals[v.dtype], split and contiguous and v.ndim > 0))
            totals[v.dtype] += v.size
        self.totals = totals
        # Per dtype: N + 1 bounds, rank r owning [bounds[r], bounds[r + 1]).
        self.bounds: Dict[np.dtype, List[int]] = {}
        for dtype in self.dtypes:
            whole = [
                (start, start + v.size)
                for v, (d, start, splittable) in zip(variables, self.place)
                if d == dtype and not splittable and v.size > 0
            ]
            self.bounds[dtype] = _bounds(totals[dtype], size, whole)
        self.sizes = [v.size for v in variables]

    def pieces(self, rank: int) -> List[Piece]:
        """One piece per variable, in build order: what `rank` holds."""
        out = []
        for index, ((dtype, start, splittable), n) in enumerate(zip(self.place, self.sizes)):
            lo, hi = self.bounds[dtype][rank], self.bounds[dtype][rank + 1]
            first, last = max(start, lo), min(start + n, hi)
            if last <= first:
                out.append(Piece(index, 0, 0, not splittable))
            else:
                out.append(Piece(index, first - start, last - start, not splittable))
        return out

    def owned(self, dtype: np.dtype, rank: int) -> Tuple[int, int]:
        """The range of `dtype`'s flat space that `rank` owns."""
        bounds = self.bounds[dtype]
        return bounds[rank], bounds[rank + 1]


def _bounds(total: int, size: int, whole: List[Tuple[int, int]]) -> List[int]:
    """N + 1 increasing cuts of [0, total) close to equal shares, none strictly inside a range
    of `whole` (each moves to the nearer end of the range it falls in)."""
    cuts = [0]
    k = 0
    for r in range(1, size):
        cut = total * r // size
        while k < len(whole) and whole[k][1] <= cut:
            k += 1
        if k < len(whole) and whole[k][0] < cut < whole[k][1]:
            start, stop = whole[k]
            cut = start if cut - start < stop - cut else stop
        cuts.append(max(cut, cuts[-1]))
    cuts.append(total)
    return cuts

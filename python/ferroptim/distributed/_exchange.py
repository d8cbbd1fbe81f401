"""The collectives of a distributed step, over mpi4py, in buckets of bounded size.

- `average`: every rank's gradients in, each rank's own range of the average out: the sum in
  rank order, left to right, in the variables' dtype, divided by the number of ranks, exactly
  `functools.reduce(np.add, [g_0, ..., g_{N-1}]) / N`. MPI's own `Reduce_scatter` adds in an
  order of its choosing (MPICH's depends on the number of ranks); here an `Alltoallv` brings
  each rank the N pieces of its range and the sum is made in rank order.
- `gather`: each rank's own range of the variables in, every variable whole on every rank out
  (`Allgatherv`).
- `broadcast`: the root's arrays to every rank (`Bcast`).
- `gather_to_root`: every rank's array joined on the root (`Gatherv`), for checkpoints.

Buckets are striped: bucket k of a dtype is the k-th slice of `bucket_size / N` bytes of every
rank's range (see `_partition`), so every collective exchanges with every rank at once, as a
bandwidth-optimal reduce-scatter and allgather do, and every link carries its share of each
bucket. A window of the flat space would instead meet one or two ranks' ranges, leaving the
other links idle while those ranks receive N pieces each.

A rank's send and receive buffers hold one bucket, at most `bucket_size` bytes each (and at
least one element per rank), allocated once and reused by every bucket and step: the memory the
exchange needs does not grow with the model, and no collective exceeds MPI's count limit.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ferroptim.distributed._partition import Partition, flat_order

__all__ = ["Exchange", "broadcast", "gather_to_root"]

# Plans of at most this many (bucket, rank) pairs are kept from step to step; a larger one
# (tiny buckets on a large model) is made again each time rather than held.
_KEPT_PLAN = 1 << 20

# MPI counts are C ints; a bucket's total count (N slices) stays below this.
_MAX_COUNT = 2**31 - 1


class _Bucket(NamedTuple):
    """One bucket of a dtype's flat space.

    Attributes:
        slices: each rank's slice [lo, hi) of the flat space (empty once its range is used up).
        counts, displs: the slices' lengths, and where each starts in the bucket's buffer (the
            slices one after the other in rank order).
        segments: the bucket's pieces of variables, in buffer order: (variable index, first
            flat element, last + 1, position in the buffer).
        own: the range of `segments` that lie in this rank's slice.
    """

    slices: List[Tuple[int, int]]
    counts: List[int]
    displs: List[int]
    segments: List[Tuple[int, int, int, int]]
    own: Tuple[int, int]


class Exchange:
    """The collectives over one communicator, one partition and one list of variables.

    Args:
        comm: an mpi4py communicator.
        partition: the partition of `variables`.
        variables: the model's variables, in build order.
        bucket_size: the most bytes a rank's send or receive buffer holds.
    """

    def __init__(
        self, comm: Any, partition: Partition, variables: Sequence[np.ndarray], bucket_size: int
    ):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.partition = partition
        self.variables = list(variables)
        self.bucket_size = bucket_size
        # Per dtype, its variables' build indices and first flat elements, in build order
        # (so ascending), empty variables left out: `_segments` bisects them.
        self._indices: Dict[np.dtype, List[int]] = {d: [] for d in partition.dtypes}
        self._starts: Dict[np.dtype, List[int]] = {d: [] for d in partition.dtypes}
        for index, (dtype, start, _) in enumerate(partition.place):
            if partition.sizes[index] > 0:
                self._indices[dtype].append(index)
                self._starts[dtype].append(start)
        self._buffers: Dict[str, np.ndarray] = {}
        self._plans: Dict[np.dtype, List[_Bucket]] = {}

    def _stripe(self, dtype: np.dtype) -> int:
        """Elements of each rank's range per bucket."""
        return max(
            1, min(self.bucket_size // (dtype.itemsize * self.size), _MAX_COUNT // self.size)
        )

    def _buckets(self, dtype: np.dtype) -> Iterator[_Bucket]:
        """The buckets of `dtype` in order (made once when the plan is small enough to keep)."""
        plan = self._plans.get(dtype)
        if plan is not None:
            yield from plan
            return
        bounds = self.partition.bounds[dtype]
        step = self._stripe(dtype)
        longest = max(bounds[r + 1] - bounds[r] for r in range(self.size))
        count = -(-longest // step)
        made: Optional[List[_Bucket]] = [] if count * self.size <= _KEPT_PLAN else None
        for k in range(count):
            bucket = self._bucket(dtype, bounds, k * step, step)
            if made is not None:
                made.append(bucket)
            yield bucket
        if made is not None:
            self._plans[dtype] = made

    def _bucket(self, dtype: np.dtype, bounds: Sequence[int], offset: int, step: int) -> _Bucket:
        slices: List[Tuple[int, int]] = []
        counts: List[int] = []
        segments: List[Tuple[int, int, int, int]] = []
        own = (0, 0)
        at = 0
        for r in range(self.size):
            lo = min(bounds[r] + offset, bounds[r + 1])
            hi = min(lo + step, bounds[r + 1])
            first_segment = len(segments)
            for index, first, last, offset_in in self._segments(dtype, lo, hi):
                segments.append((index, first, last, at + offset_in))
            if r == self.rank:
                own = (first_segment, len(segments))
            slices.append((lo, hi))
            counts.append(hi - lo)
            at += hi - lo
        displs = [0, *itertools.accumulate(counts)][:-1]
        return _Bucket(slices, counts, displs, segments, own)

    def _buffer(self, role: str, dtype: np.dtype, n: int) -> np.ndarray:
        """A reused buffer of at least `n` elements of `dtype` (one per role, shared by the
        dtypes and grown only when a bucket needs more)."""
        nbytes = n * dtype.itemsize
        raw = self._buffers.get(role)
        if raw is None or raw.nbytes < nbytes:
            raw = self._buffers[role] = np.empty(nbytes, np.uint8)
        return raw[:nbytes].view(dtype)

    def buffer_bytes(self) -> int:
        """The bytes of the reused send and receive buffers."""
        return sum(b.nbytes for b in self._buffers.values())

    def _segments(self, dtype: np.dtype, lo: int, hi: int) -> Iterator[Tuple[int, int, int, int]]:
        """The variables of `dtype` that meet [lo, hi) of its flat space: (index, first flat
        element of the variable met, last + 1, offset of the first in [lo, hi))."""
        starts = self._starts[dtype]
        indices = self._indices[dtype]
        j = max(0, bisect.bisect_right(starts, lo) - 1)
        while j < len(starts) and starts[j] < hi:
            index, start = indices[j], starts[j]
            end = start + self.partition.sizes[index]
            if end > lo:
                first, last = max(start, lo), min(end, hi)
                yield index, first - start, last - start, first - lo
            j += 1

    def _flat_views(self, arrays: Sequence[Any]) -> List[Any]:
        """Each array's elements in its variable's flat order, 1-D: a view where the array is
        laid out that way, else one copy per call (not one per bucket)."""
        out: List[Any] = []
        for index, a in enumerate(arrays):
            if a is None or self.partition.sizes[index] == 0:
                out.append(None)
            else:
                out.append(np.ravel(a, order=flat_order(self.variables[index])))
        return out

    def average(self, grads: Sequence[np.ndarray], out: Dict[np.dtype, np.ndarray]) -> None:
        """Write into `out[dtype]` (one array per dtype, as long as this rank's range) the
        average over ranks of `grads` (one per variable, of its shape) in this rank's range."""
        mpi = _mpi()
        flats = self._flat_views(grads)
        n = self.size
        for dtype in self.partition.dtypes:
            kind = _mpi_type(mpi, dtype)
            own_lo = self.partition.owned(dtype, self.rank)[0]
            result = out[dtype]
            for slices, counts, displs, segments, _ in self._buckets(dtype):
                send = self._buffer("send", dtype, displs[-1] + counts[-1])
                for index, first, last, at in segments:
                    send[at : at + last - first] = flats[index][first:last]
                mine_lo, mine_hi = slices[self.rank]
                m = mine_hi - mine_lo
                received = self._buffer("receive", dtype, n * m).reshape(n, m)
                self.comm.Alltoallv(
                    [send, counts, displs, kind],
                    [received, [m] * n, [m * r for r in range(n)], kind],
                )
                if m == 0:
                    continue
                # Added in rank order straight into the result: ((g_0 + g_1) + g_2) + ...
                total = result[mine_lo - own_lo : mine_hi - own_lo]
                if n == 1:
                    np.copyto(total, received[0])
                else:
                    np.add(received[0], received[1], out=total)
                    for s in range(2, n):
                        np.add(total, received[s], out=total)
                np.divide(total, n, out=total)

    def gather(
        self,
        targets: Sequence[np.ndarray],
        sources: Optional[Dict[np.dtype, np.ndarray]] = None,
    ) -> None:
        """Every rank's range to every rank, written into `targets` (one array per variable,
        of its shape).

        Args:
            targets: the arrays written.
            sources: this rank's range per dtype (as `average` writes it); None when the
                targets already hold this rank's range (the variables after a sharded step),
                which then is sent from them and not written.
        """
        mpi = _mpi()
        target_flats = self._flat_views(targets)
        # A target that is not contiguous gets a copy of its flat elements: written whole
        # after the last bucket.
        copied = {
            i
            for i, (t, flat) in enumerate(zip(targets, target_flats))
            if flat is not None and not np.may_share_memory(t, flat)
        }
        for dtype in self.partition.dtypes:
            kind = _mpi_type(mpi, dtype)
            own_lo = self.partition.owned(dtype, self.rank)[0]
            for slices, counts, displs, segments, (own_first, own_last) in self._buckets(dtype):
                mine_lo, mine_hi = slices[self.rank]
                m = mine_hi - mine_lo
                mine = segments[own_first:own_last]
                if sources is not None:
                    send: Any = sources[dtype][mine_lo - own_lo : mine_hi - own_lo]
                elif len(mine) == 1 and _is_plain(target_flats[mine[0][0]], dtype):
                    # This rank's slice lies in one variable: sent from it as it is.
                    index, first, last, _ = mine[0]
                    send = target_flats[index][first:last]
                else:
                    send = self._buffer("send", dtype, m)
                    start = displs[self.rank]
                    for index, first, last, at in mine:
                        send[at - start : at - start + last - first] = target_flats[index][
                            first:last
                        ]
                received = self._buffer("receive", dtype, displs[-1] + counts[-1])
                self.comm.Allgatherv([send, m, kind], [received, counts, displs, kind])
                for j, (index, first, last, at) in enumerate(segments):
                    if sources is None and own_first <= j < own_last:
                        continue
                    target_flats[index][first:last] = received[at : at + last - first]
        for index in copied:
            target = targets[index]
            order = flat_order(self.variables[index])
            target[...] = target_flats[index].reshape(target.shape, order=order)


def _is_plain(flat: np.ndarray, dtype: np.dtype) -> bool:
    """Whether `flat` can be sent as it is: contiguous elements of `dtype`."""
    return bool(flat.dtype == dtype and flat.flags.c_contiguous)


def broadcast(comm: Any, arrays: Sequence[np.ndarray], root: int, bucket_size: int) -> None:
    """The root's `arrays` to every rank of `comm`, in place, `bucket_size` bytes at a time."""
    mpi = _mpi()
    for array in arrays:
        kind = _mpi_type(mpi, array.dtype)
        step = max(1, bucket_size // array.dtype.itemsize)
        view = _flat_view(array)
        flat = view if view is not None else np.ravel(array, order="C").copy()
        for start in range(0, flat.size, step):
            chunk = np.ascontiguousarray(flat[start : start + step])
            comm.Bcast([chunk, chunk.size, kind], root=root)
            flat[start : start + step] = chunk
        if view is None:
            array[...] = flat.reshape(array.shape)


def gather_to_root(comm: Any, flat: np.ndarray, root: int, bucket_size: int) -> Any:
    """Every rank's 1-D `flat` (one dtype, any lengths) joined in rank order on `root` (None
    elsewhere), `bucket_size` bytes per rank at a time."""
    mpi = _mpi()
    kind = _mpi_type(mpi, flat.dtype)
    sizes = comm.allgather(int(flat.size))
    step = max(1, bucket_size // flat.dtype.itemsize)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    joined = np.empty(int(starts[-1]), flat.dtype) if comm.Get_rank() == root else None
    for offset in range(0, max(sizes), step):
        counts = [max(0, min(step, n - offset)) for n in sizes]
        part = np.ascontiguousarray(flat[offset : offset + counts[comm.Get_rank()]])
        received = np.empty(sum(counts), flat.dtype) if joined is not None else None
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
        comm.Gatherv([part, len(part), kind], [received, counts, displs, kind], root=root)
        if joined is not None and received is not None:
            for r, (count, at) in enumerate(zip(counts, displs)):
                lo = int(starts[r]) + offset
                joined[lo : lo + count] = received[at : at + count]
    return joined


def _flat_view(array: np.ndarray) -> Any:
    """The elements of `array` in `flat_order` as a writable 1-D view, or None if it is not
    contiguous."""
    if array.flags.c_contiguous or array.flags.f_contiguous:
        return np.ravel(array, order=flat_order(array))
    return None


def _mpi() -> Any:
    from mpi4py import MPI

    return MPI


def _mpi_type(mpi: Any, dtype: np.dtype) -> Any:
    return mpi.FLOAT if dtype == np.float32 else mpi.DOUBLE

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

A bucket covers at most `bucket_size` bytes of one dtype's flat space (see `_partition`), so
no collective exceeds MPI's count limit and the buffers stay bounded whatever the model's size.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from ferroptim.distributed._partition import Partition, flat_order

__all__ = ["Exchange", "broadcast", "gather_to_root"]


class Exchange:
    """The collectives over one communicator, one partition and one list of variables.

    Args:
        comm: an mpi4py communicator.
        partition: the partition of `variables`.
        variables: the model's variables, in build order.
        bucket_size: the most bytes one collective moves per rank's buffer.
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

    def _buckets(self, dtype: np.dtype) -> Iterator[Tuple[int, int]]:
        """The buckets of `dtype`'s flat space: consecutive ranges of at most `bucket_size`
        bytes (at least one element)."""
        step = max(1, self.bucket_size // dtype.itemsize)
        total = self.partition.totals[dtype]
        for start in range(0, total, step):
            yield start, min(start + step, total)

    def _members(self, dtype: np.dtype, lo: int, hi: int) -> Iterator[Tuple[int, int, int, int]]:
        """The variables of `dtype` that meet [lo, hi) of its flat space: (index, first flat
        element of the variable met, last + 1, offset of the first in [lo, hi))."""
        for index, (d, start, _) in enumerate(self.partition.place):
            n = self.partition.sizes[index]
            if d != dtype or start >= hi or start + n <= lo:
                continue
            first, last = max(start, lo), min(start + n, hi)
            yield index, first - start, last - start, first - lo

    def average(self, grads: Sequence[np.ndarray], out: Dict[np.dtype, np.ndarray]) -> None:
        """Write into `out[dtype]` (one array per dtype, as long as this rank's range) the
        average over ranks of `grads` (one per variable, of its shape) in this rank's range."""
        mpi = _mpi()
        for dtype in self.partition.dtypes:
            own_lo, own_hi = self.partition.owned(dtype, self.rank)
            bounds = self.partition.bounds[dtype]
            kind = _mpi_type(mpi, dtype)
            result = out[dtype]
            for lo, hi in self._buckets(dtype):
                send = np.empty(hi - lo, dtype)
                for index, first, last, at in self._members(dtype, lo, hi):
                    g = grads[index]
                    flat = np.ravel(g, order=flat_order(self.variables[index]))
                    send[at : at + last - first] = flat[first:last]
                counts, displs = _shares(bounds, lo, hi)
                mine_lo, mine_hi = max(lo, own_lo), min(hi, own_hi)
                m = max(0, mine_hi - mine_lo)
                received = np.empty((self.size, m), dtype)
                self.comm.Alltoallv(
                    [send, counts, displs, kind],
                    [received, [m] * self.size, [m * s for s in range(self.size)], kind],
                )
                if m == 0:
                    continue
                total = received[0].copy()
                for s in range(1, self.size):
                    np.add(total, received[s], out=total)
                np.divide(total, self.size, out=total)
                result[mine_lo - own_lo : mine_hi - own_lo] = total

    def gather(self, sources: Dict[np.dtype, np.ndarray], targets: Sequence[np.ndarray]) -> None:
        """Every rank's range of `sources[dtype]` (as `average` writes it) to every rank,
        written into `targets` (one array per variable, of its shape)."""
        mpi = _mpi()
        pending: Dict[int, np.ndarray] = {}
        for dtype in self.partition.dtypes:
            own_lo, own_hi = self.partition.owned(dtype, self.rank)
            bounds = self.partition.bounds[dtype]
            kind = _mpi_type(mpi, dtype)
            source = sources[dtype]
            for lo, hi in self._buckets(dtype):
                mine_lo, mine_hi = max(lo, own_lo), min(hi, own_hi)
                m = max(0, mine_hi - mine_lo)
                send = source[mine_lo - own_lo : mine_lo - own_lo + m]
                counts, displs = _shares(bounds, lo, hi)
                received = np.empty(hi - lo, dtype)
                self.comm.Allgatherv(
                    [np.ascontiguousarray(send), m, kind], [received, counts, displs, kind]
                )
                for index, first, last, at in self._members(dtype, lo, hi):
                    _write_flat(
                        targets[index], first, received[at : at + last - first], pending, index
                    )

    def owned_values(self, arrays: Sequence[np.ndarray]) -> Dict[np.dtype, np.ndarray]:
        """This rank's range of `arrays` (one per variable), per dtype, as `gather` takes it."""
        out: Dict[np.dtype, np.ndarray] = {}
        for dtype in self.partition.dtypes:
            own_lo, own_hi = self.partition.owned(dtype, self.rank)
            buffer = np.empty(own_hi - own_lo, dtype)
            for index, first, last, at in self._members(dtype, own_lo, own_hi):
                flat = np.ravel(arrays[index], order=flat_order(self.variables[index]))
                buffer[at : at + last - first] = flat[first:last]
            out[dtype] = buffer
        return out


def _shares(bounds: Sequence[int], lo: int, hi: int) -> Tuple[List[int], List[int]]:
    """Each rank's count of the elements of [lo, hi) it owns (`bounds`: the ranks' cuts), and
    where its share starts in the bucket."""
    counts = [max(0, min(hi, bounds[s + 1]) - max(lo, bounds[s])) for s in range(len(bounds) - 1)]
    displs = [max(bounds[s], lo) - lo if counts[s] else 0 for s in range(len(bounds) - 1)]
    return counts, displs


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


def _write_flat(
    target: np.ndarray, first: int, values: np.ndarray, pending: Dict[int, np.ndarray], index: int
) -> None:
    """Write `values` at flat elements `first...` of `target`; a target that is not contiguous
    is collected in `pending` and written whole once its last element has arrived."""
    view = _flat_view(target)
    if view is not None:
        view[first : first + values.size] = values
        return
    buffer = pending.get(index)
    if buffer is None:
        buffer = pending[index] = np.empty(target.size, target.dtype)
    buffer[first : first + values.size] = values
    if first + values.size == target.size:
        target[...] = buffer.reshape(target.shape)
        del pending[index]


def _mpi() -> Any:
    from mpi4py import MPI

    return MPI


def _mpi_type(mpi: Any, dtype: np.dtype) -> Any:
    return mpi.FLOAT if dtype == np.float32 else mpi.DOUBLE

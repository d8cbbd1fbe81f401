"""`DistributedOptimizer`: data-parallel training over MPI, with the optimizer state sharded
across ranks (ZeRO stage 1) or replicated (plain allreduce).

Each rank computes gradients on its own batches; a step averages them over the ranks (the sum
in rank order, then divided by the number of ranks: `_exchange`) and applies the wrapped
optimizer to the average, so every rank ends the step with the same parameters, bit for bit,
and the same numbers as one process stepping on the averaged gradient.

With `shard_state=True` each rank owns about 1/N of the model's elements (`_partition`): it
receives the average of its range only (a reduce-scatter), steps the wrapped optimizer over that
range (whose slots are then 1/N of the model's), and the ranges are gathered back into every
rank's parameters (an allgather). Element-wise rules split the variables anywhere; a rule that
needs whole tensors (per-tensor `clipnorm`, Lamb, Adafactor, Muon) gets each variable whole on
one rank. `global_clipnorm` clips by the norm over all ranks, and a LossScaleOptimizer's
decision to skip a step is taken over all ranks.

Collective errors: every rank checks its own arguments and the ranks agree before any
communication of data or any write, so a bad gradient on one rank raises the same exception on
every rank and changes nothing anywhere. A rank that dies or raises outside a step cannot be
seen by the others, which then wait in their next collective: run under `python -m mpi4py`
(`mpiexec -n 4 python -m mpi4py train.py`), which aborts the whole job when any rank ends with
an uncaught exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple

import numpy as np

from ferroptim._indexed_slices import IndexedSlices, check_sparse_gradient
from ferroptim.distributed._exchange import Exchange, broadcast, gather_to_root
from ferroptim.distributed._partition import Partition, Piece, flat_order
from ferroptim.optimizers import LossScaleOptimizer, Optimizer
from ferroptim.optimizers._checkpoint_file import (
    CheckpointError,
    Reader,
    check_destination,
    fspath,
    write_atomically,
)
from ferroptim.optimizers._messages import raise_pairs_error, refuse_key_pairs
from ferroptim.optimizers._step import checked_gradient
from ferroptim.optimizers.checkpoint import _json_default, _optimizer_tree, _snapshot

__all__ = ["DistributedOptimizer"]

# Horovod's default fusion buffer.
DEFAULT_BUCKET_SIZE = 64 * 1024 * 1024
_ROOT = 0


def _comm_world() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as error:  # pragma: no cover - the [mpi] extra installs it
        raise ImportError(
            "ferroptim.distributed needs mpi4py and an MPI library: `pip install "
            "ferroptim[mpi]` (and `pip install mpich` for a single-machine runtime)"
        ) from error
    return MPI.COMM_WORLD


def _splittable(optimizer: Any) -> bool:
    """Whether every rule of the tree updates each element on its own (no norm over a tensor
    but `global_clipnorm`'s, which is reduced over the ranks)."""
    for o in _optimizer_tree(optimizer):
        if isinstance(o, LossScaleOptimizer) or hasattr(o, "_sub_optimizers"):
            if o.clipnorm:
                return False
            continue
        if not o._elementwise or (o.clipnorm and o.clipnorm > 0):
            return False
    return True


def agree(comm: Any, error: Optional[BaseException], extra: Any = None) -> List[Any]:
    """Make a local error collective: every rank learns every rank's error; if any rank has
    one, every rank raises the first one's type and message (naming its rank). Returns every
    rank's `extra`."""
    report = None if error is None else (type(error), str(error))
    everything = comm.allgather((report, extra))
    for rank, (found, _) in enumerate(everything):
        if found is not None:
            kind, message = found
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = RuntimeError
            raise kind(f"{message} (rank {rank})") from error
    return [e for _, e in everything]


class DistributedOptimizer:
    """Data-parallel steps of a ferroptim optimizer over MPI (see the module docstring).

    Example (run with `mpiexec -n 4 python -m mpi4py train.py`):

        opt = DistributedOptimizer(fo.optimizers.Adam(learning_rate=1e-3))
        opt.broadcast_variables(params, root=0)
        for batch in my_batches:               # each rank its own batches
            opt.apply(backprop(params, batch), params)
        opt.save("checkpoint.fo")             # one file, the single-process format

    Args:
        optimizer: the optimizer to distribute (any ferroptim optimizer or wrapper), not built
            yet: the distributed optimizer builds it on the variables (or, with sharded state,
            on this rank's share of them).
        comm: an mpi4py communicator; None for `MPI.COMM_WORLD`. It is duplicated, so the
            optimizer's messages never mix with the caller's.
        shard_state: keep optimizer state for this rank's share of the elements only (ZeRO
            stage 1); False: every rank holds the whole state (allreduce).
        bucket_size: the most bytes of this rank's send or receive buffer: one bucket, a 1/N
            slice of every rank's range of one dtype (at least 8 bytes, and one element per
            rank). The two buffers are kept from step to step.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        comm: Any = None,
        shard_state: bool = True,
        bucket_size: int = DEFAULT_BUCKET_SIZE,
    ):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"`optimizer` must be a ferroptim optimizer. Received: {type(optimizer).__name__}"
            )
        if optimizer.built:
            raise ValueError(
                "Wrap the optimizer before it is built: the distributed optimizer builds it on "
                "this rank's share of the variables."
            )
        if not isinstance(shard_state, bool):
            raise TypeError(f"`shard_state` must be a bool. Received: {shard_state!r}")
        if isinstance(bucket_size, bool) or not isinstance(bucket_size, (int, np.integer)):
            raise TypeError(f"`bucket_size` must be an int. Received: {bucket_size!r}")
        if bucket_size < 8:
            raise ValueError(f"`bucket_size` must be at least 8 bytes. Received: {bucket_size}")
        self.optimizer = optimizer
        self.comm = (comm if comm is not None else _comm_world()).Dup()
        self.shard_state = shard_state
        self.bucket_size = int(bucket_size)
        self.built = False
        self._names: List[str] = []
        self._variables: List[np.ndarray] = []
        self._pieces: List[Piece] = []
        self._views: List[np.ndarray] = []
        self._dict_input = False

    @property
    def rank(self) -> int:
        """This process's rank in the communicator."""
        return int(self.comm.Get_rank())

    @property
    def size(self) -> int:
        """The number of ranks."""
        return int(self.comm.Get_size())

    # --- set-up ------------------------------------------------------------------------------

    def broadcast_variables(self, variables: Any, root: int = 0) -> None:
        """Give every rank `root`'s values of `variables` (collective), in place.

        Args:
            variables: a list, tuple or dict of arrays, the same names, shapes and dtypes on
                every rank.
            root: the rank whose values are kept.
        """
        arrays = list(variables.values()) if isinstance(variables, Mapping) else list(variables)
        error: Optional[BaseException] = None
        shapes = [(np.shape(a), str(getattr(a, "dtype", ""))) for a in arrays]
        if not all(isinstance(a, np.ndarray) for a in arrays):
            error = TypeError("`variables` must be NumPy arrays")
        shared = agree(self.comm, error, shapes)
        if any(s != shared[root] for s in shared):
            raise ValueError(
                "`broadcast_variables` needs the same shapes and dtypes on every rank; "
                f"rank {root} has {shared[root]}"
            )
        broadcast(self.comm, arrays, root, self.bucket_size)

    def build(self, var_list: Any) -> None:
        """Build on the model's variables (the same names, shapes and dtypes on every rank);
        a no-op once built. The first `apply` builds it.

        Args:
            var_list: a list, tuple or dict of float32/float64 arrays.
        """
        if self.built:
            return
        inner = self.optimizer
        names, variables = inner._names_and_variables(var_list)
        error: Optional[BaseException] = None
        for name, v in zip(names, variables):
            if not isinstance(v, np.ndarray) or v.dtype not in (np.float32, np.float64):
                error = TypeError(f"Variable '{name}' must be a float32 or float64 NumPy array")
                break
            if not v.flags.writeable:
                error = ValueError(f"Variable '{name}' is read-only; it must be writeable.")
                break
        layouts = agree(
            self.comm, error, [(n, v.shape, v.dtype.str) for n, v in zip(names, variables)]
        )
        if any(layout != layouts[0] for layout in layouts):
            raise ValueError("The variables differ between ranks (names, shapes or dtypes).")
        self._names, self._variables = list(names), list(variables)
        self._dict_input = isinstance(var_list, Mapping)
        split = not self.shard_state or _splittable(inner)
        self._partition = Partition(variables, self.size, split)
        self._exchange = Exchange(self.comm, self._partition, variables, self.bucket_size)
        self._averaged = {}
        for dtype in self._partition.dtypes:
            lo, hi = self._partition.owned(dtype, self.rank)
            self._averaged[dtype] = np.zeros(hi - lo, dtype)
        if self.shard_state:
            self._pieces = self._partition.pieces(self.rank)
            self._views = [p.view(v) for p, v in zip(self._pieces, variables)]
            excluded = {id(v) for v in inner._exclude_from_weight_decay_vars}
            inner.build(self._as_input(self._views))
            if excluded:
                inner._set_exclusions(
                    [view for view, v in zip(self._views, variables) if id(v) in excluded],
                    None,
                )
            for o in _optimizer_tree(inner):
                o._run_exclusive(self._install_hooks, o)
            self._gradient_views = self._shard_gradients()
        else:
            inner.build(var_list)
            self._full = [np.empty_like(v, order=flat_order(v)) for v in variables]
        self.built = True

    def _install_hooks(self, o: Any) -> None:
        o._reduce_sum_squares = self._sum_over_ranks
        o._invalidate_plan()
        if isinstance(o, LossScaleOptimizer):
            o._reduce_finite = self._all_ranks_finite

    def _as_input(self, arrays: List[Any]) -> Any:
        """`arrays` (one per variable) as the wrapped optimizer was given its variables."""
        return dict(zip(self._names, arrays)) if self._dict_input else list(arrays)

    def _shard_gradients(self) -> List[np.ndarray]:
        """Per variable, the view of this rank's averaged gradients that its piece takes."""
        out = []
        for piece, v in zip(self._pieces, self._variables):
            dtype, start, _ = self._partition.place[piece.index]
            own_lo = self._partition.owned(dtype, self.rank)[0]
            lo = start + piece.start - own_lo
            segment = self._averaged[dtype][lo : lo + piece.size]
            if piece.whole:
                if piece.size == v.size and v.size > 0:
                    segment = segment.reshape(v.shape, order=flat_order(v))
                else:
                    segment = np.empty((0,) * max(v.ndim, 1), v.dtype)
            out.append(segment)
        return out

    def _sum_over_ranks(self, local: float) -> float:
        # Every rank's sum, added in rank order: the same value on every rank.
        total = 0.0
        for value in self.comm.allgather(float(local)):
            total += value
        return total

    def _all_ranks_finite(self, local: bool) -> bool:
        return bool(all(self.comm.allgather(bool(local))))

    # --- the step ------------------------------------------------------------------------

    def apply(self, grads: Any, trainable_variables: Any = None) -> None:
        """One data-parallel step (collective): the wrapped optimizer's step on the average of
        every rank's `grads`.

        Args:
            grads: this rank's gradients, as `Optimizer.apply` takes them (a list aligned with
                the variables, or a dict by name; None, or a missing key, for a variable
                without gradient, which must then be so on every rank).
            trainable_variables: the variables (list or dict), or None once built.
        """
        error: Optional[BaseException] = None
        gradients: List[Any] = []
        try:
            if not self.built:
                if trainable_variables is None:
                    raise ValueError(
                        "The first `apply` needs `trainable_variables` (or call `build` first)."
                    )
            gradients = self._local_gradients(grads, trainable_variables)
        except (TypeError, ValueError) as caught:
            error = caught
        masks = agree(self.comm, error, [g is None for g in gradients])
        if not self.built:
            self.build(trainable_variables)
        if any(m != masks[0] for m in masks):
            raise ValueError(
                "A variable has a gradient on some ranks and None on others; give it one on "
                "every rank (zeros where a rank's batch does not touch it) or on none."
            )
        missing = masks[0]
        if all(missing):
            raise ValueError("No gradients provided for any variable.")
        filled = [np.zeros(0) if g is None else g for g in gradients]
        self._exchange.average(filled, self._averaged)
        if self.shard_state:
            shard = [None if m else g for m, g in zip(missing, self._gradient_views)]
            self.optimizer.apply(self._as_input(shard), self._as_input(self._views))
            self._exchange.gather(self._variables)
        else:
            self._exchange.gather(self._full, self._averaged)
            full = [None if m else g for m, g in zip(missing, self._full)]
            self.optimizer.apply(self._as_input(full), self._as_input(self._variables))

    def apply_gradients(self, grads_and_vars: Any) -> int:
        """`apply` over (gradient, variable) pairs (collective); returns the raw iteration
        count. What is not an iterable of pairs raises, as `Optimizer.apply_gradients` says,
        on every rank.

        Args:
            grads_and_vars: an iterable of (gradient, variable) pairs, e.g.
                `zip(grads, params)`.
        """
        pairs = list(grads_and_vars)
        grads: Any = []
        variables: Any = None
        try:
            refuse_key_pairs([p for p in pairs if type(p) in (tuple, list) and len(p) == 2])
            if any(type(p) not in (tuple, list) or len(p) != 2 for p in pairs):
                raise_pairs_error(grads_and_vars, pairs)
            if pairs:
                grads, variables = (list(items) for items in zip(*pairs))
        except TypeError as error:
            # Every rank steps into `apply`'s agreement: this rank's error is raised there, on
            # every rank.
            agree(self.comm, error)
        if pairs:
            self.apply(grads, variables)
        return self.optimizer._iterations

    def _local_gradients(self, grads: Any, trainable_variables: Any) -> List[Any]:
        """This rank's gradients as arrays aligned with the variables (None where absent),
        checked; raises what is wrong with them."""
        if self.built:
            names, variables = self._names, self._variables
            if trainable_variables is not None:
                given = self.optimizer._names_and_variables(trainable_variables)[1]
                if len(given) != len(variables) or any(
                    a is not b for a, b in zip(given, variables)
                ):
                    raise ValueError(
                        "A distributed optimizer steps the variables it was built on, all of "
                        "them, in their order."
                    )
        else:
            names, variables = self.optimizer._names_and_variables(trainable_variables)
        if isinstance(grads, Mapping):
            unknown = [key for key in grads if str(key) not in names]
            if unknown:
                raise ValueError(f"Unknown variable name: '{unknown[0]}'.")
            by_name = {str(key): g for key, g in grads.items()}
            listed = [by_name.get(name) for name in names]
        else:
            listed = list(grads)
            if len(listed) != len(variables):
                raise ValueError(
                    f"Received {len(listed)} gradients for {len(variables)} variables."
                )
        out: List[Any] = []
        for name, g, v in zip(names, listed, variables):
            if g is None:
                out.append(None)
                continue
            if isinstance(g, IndexedSlices):
                # Averaged over the ranks as its dense scatter (the exchange moves dense
                # ranges of the flat space).
                check_sparse_gradient(g, v, name)
                g = g.to_dense()
            out.append(checked_gradient(g, v, name))
        return out

    def finalize_variable_values(self) -> None:
        """The wrapped optimizer's `finalize_variable_values` (with `use_ema`, every variable
        takes its moving average), on every rank (collective)."""
        self._on_variables(lambda variables: self.optimizer.finalize_variable_values(variables))

    def swap_to_eval(self) -> None:
        """ScheduleFreeAdamW's `swap_to_eval` on every rank (collective)."""
        swap = self._method("swap_to_eval")
        self._on_variables(lambda _: swap())

    def swap_to_train(self) -> None:
        """ScheduleFreeAdamW's `swap_to_train` on every rank (collective)."""
        swap = self._method("swap_to_train")
        self._on_variables(lambda _: swap())

    def _method(self, name: str) -> Callable[[], None]:
        method = getattr(self.optimizer, name, None)
        if method is None:
            raise AttributeError(
                f"{type(self.optimizer).__name__} has no `{name}` (ScheduleFreeAdamW has)"
            )
        return method  # type: ignore[no-any-return]

    def _on_variables(self, write: Callable[[Any], None]) -> None:
        """Let the wrapped optimizer write the variables it was built on (this rank's share
        with sharded state, then gathered into every rank's variables)."""
        if not self.built:
            return
        if not self.shard_state:
            write(self._as_input(self._variables))
            return
        write(self._as_input(self._views))
        self._exchange.gather(self._variables)

    # --- state -----------------------------------------------------------------------------

    @property
    def iterations(self) -> int:
        """The wrapped optimizer's `iterations` (the same on every rank)."""
        return int(self.optimizer.iterations)

    @property
    def variables(self) -> List[np.ndarray]:
        """The optimizer state this rank holds: the wrapped optimizer's `variables` (with
        sharded state, its slots cover this rank's share of the elements)."""
        return list(self.optimizer.variables)

    @property
    def learning_rate(self) -> Any:
        """The wrapped optimizer's learning rate."""
        return self.optimizer.learning_rate

    def _state_owners(self) -> Dict[int, int]:
        """id of each per-variable state array (slots, averages, accumulators, in every
        optimizer of the tree) -> the build index of its variable."""
        index_of = {id(view): i for i, view in enumerate(self._views)}
        owners: Dict[int, int] = {}
        for o in _optimizer_tree(self.optimizer):
            if not o.built:
                continue
            built = o._trainable_variables
            tables = list(o._slot_kinds.values())
            tables += [o._model_variables_moving_average, o._accumulated_gradients]
            for table in tables:
                for j, array in enumerate(table):
                    if array is not None and j < len(built) and id(built[j]) in index_of:
                        owners[id(array)] = index_of[id(built[j])]
        return owners

    def save(self, filepath: Any, include_variables: bool = True) -> None:
        """Write one checkpoint in the single-process format (collective; rank 0 writes it),
        which `fo.optimizers.Optimizer.load` reads without MPI and `load_state` resumes at any
        number of ranks.

        Args:
            filepath: the path, as `Optimizer.save` takes it (on rank 0's file system).
            include_variables: also write the variables' values.
        """
        if not self.built:
            raise ValueError("Build the distributed optimizer (or step it) before saving it.")
        if not self.shard_state:
            error: Optional[BaseException] = None
            if self.rank == _ROOT:
                try:
                    self.optimizer.save(filepath, include_variables=include_variables)
                except Exception as caught:
                    error = caught
            agree(self.comm, error)
            return
        local = [np.asarray(v) for v in self.optimizer.variables]
        owners = self._state_owners()
        kinds = [owners.get(id(v)) for v in self.optimizer.variables]
        full: List[Any] = []
        for k, array in enumerate(local):
            order: Literal["C", "F"] = flat_order(array) if array.ndim else "C"
            flat = np.ravel(array, order=order)
            layouts = self.comm.gather((array.shape, order, array.dtype.str), root=_ROOT)
            if array.dtype.kind == "f":
                joined = gather_to_root(self.comm, flat, _ROOT, self.bucket_size)
            else:
                # Integer state (step counters) is a scalar: no bucket needed.
                joined = self.comm.gather(flat, root=_ROOT)
                joined = None if joined is None else np.concatenate(joined)
            if self.rank == _ROOT:
                sizes = [int(np.prod(shape)) for shape, _, _ in layouts]
                offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
                pieces = [
                    (joined[offsets[r] : offsets[r + 1]], shape, o)
                    for r, (shape, o, _) in enumerate(layouts)
                ]
                full.append(self._assemble(array, kinds[k], pieces))
        error = None
        if self.rank == _ROOT:
            try:
                path = fspath(filepath)
                check_destination(path)
                self._write(path, full, include_variables)
            except Exception as caught:
                error = caught
        agree(self.comm, error)

    def _owner_rank(self, index: int) -> int:
        """The rank that holds variable `index` whole."""
        dtype, start, _ = self._partition.place[index]
        bounds = self._partition.bounds[dtype]
        for r in range(self.size):
            if bounds[r] <= start < bounds[r + 1]:
                return r
        return 0

    def _assemble(
        self,
        local: np.ndarray,
        owner: Optional[int],
        pieces: List[Tuple[np.ndarray, Tuple[int, ...], Literal["C", "F"]]],
    ) -> np.ndarray:
        """On rank 0: the single-process value of a state variable from every rank's piece
        (flat values, shape, order). `owner`: the build index of its variable, for the state
        of a variable (a slot, an average, an accumulator), else None."""
        if owner is not None:
            variable = self._variables[owner]
            if self._partition.place[owner][2]:
                # A split variable: the ranks' ranges of its flat elements, in rank order.
                joined = np.concatenate([flat for flat, _, _ in pieces])
                return joined.reshape(variable.shape, order=flat_order(variable))
            flat, shape, order = pieces[self._owner_rank(owner)]
            return flat.reshape(shape, order=order)
        # Other state: held by one rank whole (a slot the tables above do not list), or the
        # same on every rank (the iteration count, a learning rate, a loss scale).
        holders = [r for r, (flat, _, _) in enumerate(pieces) if flat.size > 0]
        if len(pieces) > 1 and len(holders) == 1:
            flat, shape, order = pieces[holders[0]]
            return flat.reshape(shape, order=order)
        return local

    def _write(self, path: str, full: List[np.ndarray], include_variables: bool) -> None:
        header_bytes, members = _snapshot(self.optimizer, include_variables)
        header = json.loads(header_bytes.decode("utf-8"))
        header["variables"] = [
            {"name": n, "shape": list(v.shape), "dtype": v.dtype.name}
            for n, v in zip(self._names, self._variables)
        ]
        header["optimizer_variables"] = [
            dict(spec, shape=list(np.shape(value)), dtype=np.asarray(value).dtype.name)
            for spec, value in zip(header["optimizer_variables"], full)
        ]
        members = [(f"optimizer/{i}.npy", value) for i, value in enumerate(full)]
        if include_variables:
            members += [(f"variables/{i}.npy", v) for i, v in enumerate(self._variables)]
        encoded = json.dumps(header, default=_json_default, indent=1).encode("utf-8")
        write_atomically(path, encoded, members)

    def load_state(self, filepath: Any, var_list: Any = None) -> None:
        """Restore a checkpoint written by `save` (or by a single process) into this
        optimizer, at any number of ranks (collective; every rank reads the file).

        Args:
            filepath: the checkpoint's path, readable on every rank.
            var_list: the variables to build on, when not built yet.
        """
        if not self.built:
            if var_list is None:
                raise ValueError("`load_state` on an unbuilt optimizer needs `var_list`.")
            self.build(var_list)
        error: Optional[BaseException] = None
        commit: Callable[[], None] = lambda: None  # noqa: E731
        try:
            commit = self._prepare_load(fspath(filepath))
        except (OSError, ValueError, TypeError) as caught:
            error = caught
        agree(self.comm, error)
        commit()

    def _prepare_load(self, path: str) -> Callable[[], None]:
        if not self.shard_state:
            # Every rank holds the whole state: the single-process reader, checked on every rank
            # before any assigns.
            inner = self.optimizer
            with Reader(path) as reader:
                from ferroptim.optimizers.checkpoint import _prepare

                if reader.header["class_name"] != type(inner).__name__:
                    raise CheckpointError(
                        f"{path} holds a '{reader.header['class_name']}' optimizer; it cannot be "
                        f"loaded into a '{type(inner).__name__}'."
                    )
                return _prepare(inner, reader, None, restore_exclusions=False)
        inner = self.optimizer
        owners = self._state_owners()
        local = list(inner.variables)
        with Reader(path) as reader:
            header = reader.header
            if header["class_name"] != type(inner).__name__:
                raise CheckpointError(
                    f"{path} holds a '{header['class_name']}' optimizer; it cannot be loaded "
                    f"into a '{type(inner).__name__}'."
                )
            specs = header["variables"]
            expected = [
                {"name": n, "shape": list(v.shape), "dtype": v.dtype.name}
                for n, v in zip(self._names, self._variables)
            ]
            if specs != expected:
                raise CheckpointError(
                    f"{path} was saved for other variables (names, shapes or dtypes)."
                )
            saved = header["optimizer_variables"]
            if len(saved) != len(local):
                raise CheckpointError(
                    f"{path} holds {len(saved)} optimizer variables; this optimizer has "
                    f"{len(local)}."
                )
            values = []
            for k, (spec, target) in enumerate(zip(saved, local)):
                value = reader.read_array(
                    f"optimizer/{k}.npy", tuple(spec["shape"]), np.dtype(spec["dtype"])
                )
                values.append(self._piece_of(value, target, owners.get(id(target))))
            params = []
            if header["variables_saved"]:
                for i, v in enumerate(self._variables):
                    params.append(reader.read_array(f"variables/{i}.npy", v.shape, v.dtype))
        checked = inner._checked_variables(values)

        def commit() -> None:
            inner._run_exclusive(inner._commit_variables, checked)
            for target, value in zip(self._variables, params):
                np.copyto(target, value)

        return commit

    def _piece_of(self, value: np.ndarray, target: Any, owner: Optional[int]) -> np.ndarray:
        """This rank's part of state variable `value` (its single-process value)."""
        if owner is not None and self._partition.place[owner][2]:
            variable = self._variables[owner]
            piece = self._pieces[owner]
            flat = np.ravel(value, order=flat_order(variable))
            return flat[piece.start : piece.stop]
        shape = np.shape(target)
        if shape == value.shape:
            return value
        if int(np.prod(shape)) == 0:
            return np.zeros(shape, value.dtype)
        raise CheckpointError(
            f"a saved optimizer variable has shape {value.shape}; this rank holds {shape}"
        )

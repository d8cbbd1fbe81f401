"""Checkpoint files: an optimizer's configuration and state, and its variables, without pickle.

`Optimizer.save(filepath)` writes one; `Optimizer.load(filepath, var_list)` creates the optimizer
again from it; `optimizer.load_state(filepath)` restores the state into an optimizer the caller
created. Restored and resumed, an optimizer continues bit for bit as if it had never stopped:
the file holds every entry of `variables` (the raw iteration count, a float learning rate, the
slots, EMA averages, gradient accumulators, any per-step state such as Nadam's `u_product`), the
configuration (learning-rate schedules serialized, so the schedule resumes at the saved
iteration), the weight-decay exclusions and, by default, the values of the variables the optimizer
was built on.

File format, version 1
----------------------
A ZIP archive, members stored uncompressed, that `numpy.load` also opens as an `.npz`:

- `header.json`, the first member: a UTF-8 JSON object with
    - `"format"`: `"ferroptim.optimizer"`; `"format_version"`: 1 (a reader refuses a newer one);
      `"ferroptim_version"`: the writer's version (informative only);
    - `"class_name"`: the optimizer's class name (`"Adam"`);
    - `"config"`: `get_config()`, a `LearningRateSchedule` serialized as
      `ferroptim.optimizers.schedules.serialize` does; `"learning_rate_callable"`: true when the
      learning rate was a plain callable, whose place in `"config"` is then null (a file holds no
      code: such a checkpoint is read with `load_state`); `"config"` is null as a whole, with
      the reason in `"config_error"`, when some other entry cannot be written as JSON (an inner
      optimizer's callable learning rate, a MultiOptimizer's callable map);
    - `"variables"`: `[{"name", "shape", "dtype"}, ...]`, the variables the optimizer was built
      on, in build order; `"variables_saved"`: whether their values are in the file;
    - `"optimizer_variables"`: the same for `variables` (Keras's order: `iteration` int64,
      `learning_rate` float32 when the rate is a float, then the rest);
    - `"exclude_from_weight_decay"`: one `{"indices": [build positions, increasing],
      "pattern": literal names joined by "|", or null}` for the optimizer, then one for each
      optimizer it holds (a LossScaleOptimizer's inner optimizer, a MultiOptimizer's
      sub-optimizers), depth first.
- `optimizer/<i>.npy`: entry i of `variables`, in NumPy's `.npy` format (no pickled objects).
- `variables/<i>.npy`: the i-th built variable, when `"variables_saved"`.

A weight-decay exclusion pattern travels in a file only as literal names: `"bias|norm"`, each
name free of regular-expression syntax (`\\ . ^ $ * + ? { } [ ] ( )`), which is what
`exclude_from_weight_decay(var_names=["bias", "norm"])` produces. The writer turns any other
pattern of a built optimizer into the positions of the variables it excludes (the variables of
a built optimizer never change, so nothing is lost); only an optimizer saved before it was
built keeps such a pattern in its file, and `load` refuses it (see below).

Writing is atomic: the archive goes to a temporary file in the destination's directory, is flushed
and `fsync`ed, then renamed over the destination (`os.replace`) and the directory is `fsync`ed.
A crash at any point leaves either the previous file or the complete new one (and, after a hard
crash, possibly a stray `.<name>.<random>.tmp` file beside it, which is never read; a long name
is shortened in it so that it stays within the file system's limit on a name). Only a regular
file is ever replaced: a directory, a symbolic link (whatever it points to), a FIFO, a socket or
a device at the path is refused with an OSError and left as it is. The check is made before the
temporary file is created and again just before the rename; the directory is assumed not to be
changed by someone else in between.

Reading treats the file as untrusted, and checks everything before it changes anything: the
path must name a regular file (a symbolic link to one is followed; a FIFO, a device or a
directory is refused without being read, and nothing waits on a FIFO); the archive must hold
exactly the members the header describes, each once, stored uncompressed and with consistent
sizes (so no member inflates, whatever it declares); the header is at most 64 MiB; then the
format and version, the class (a concrete optimizer: the abstract `Optimizer` base is
refused, at any depth), every name, shape and dtype against the optimizer and the variables it
is given, each member's `.npy` header and size before its data is read, the weight-decay
exclusions against the optimizer, and each member's CRC-32. Every read is bounded by the sizes
the optimizer expects, not by those the file declares. The arrays are read whole into memory
first (a restore needs memory for one copy of the state), then everything is assigned at once.
A mismatch or a damaged file is a ValueError (a wrong argument type a TypeError, a path that
cannot be read or is not a regular file an OSError), and the optimizer and the variables are
left as they were. (`load_state` with `var_list` on an optimizer that is not built yet builds
it first, as `build(var_list)` would; a file refused after that leaves it built, with the fresh
state `build` gives.)

How `load` restores weight-decay exclusions differs from Keras, which keeps the regular
expression and runs it with `re.search` against each variable's path: an exclusion read from a
file never runs as a regular expression. Its literal names are matched as `re.search` would
match them (a variable is excluded when its name contains one), once, when loading, and the
result is restored as the set of excluded variables; for an optimizer that stays unbuilt the
literal pattern itself is restored. A pattern longer than 4096 characters or with
regular-expression syntax is refused: a regular expression from a file could make the first
step take practically forever (`(.|.)*Z` does). Such a checkpoint is restored by creating the
optimizer, calling `exclude_from_weight_decay`, then `load_state` (which keeps the caller's
exclusions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ._checkpoint_file import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    Reader,
    abbreviated,
    check_destination,
    fspath,
    write_atomically,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load", "load_state", "read_header"]

# Characters with a meaning in a regular expression (`|` separates the literal names).
_REGEX_SYNTAX = frozenset("\\.^$*+?{}[]()")


# --- writing -----------------------------------------------------------------------------------


def save(optimizer: Any, filepath: Any, include_variables: bool = True) -> None:
    """Write `optimizer`'s configuration and state to `filepath`, atomically.

    No step of `optimizer` runs while the file is written (a step started by another thread
    waits), so the file holds the state between two steps.

    Args:
        optimizer: a `ferroptim.optimizers.Optimizer`, built or not.
        filepath: a path (str or os.PathLike). An existing regular file is replaced; anything
            else at the path (a directory, a symbolic link, a FIFO, a device) is refused with
            an OSError and left as it is.
        include_variables: also write the values of the variables the optimizer was built on
            (the model's parameters), so that loading restores them too.
    """
    path = fspath(filepath)
    if not isinstance(include_variables, bool):
        raise TypeError(
            f"`include_variables` must be a bool. Received: include_variables={include_variables!r}"
        )
    # Before the snapshot: a refused destination costs nothing and creates nothing.
    check_destination(path)

    def write() -> None:
        header, members = _snapshot(optimizer, include_variables)
        write_atomically(path, header, members)

    optimizer._run_exclusive(write)


def _snapshot(optimizer: Any, include_variables: bool) -> Tuple[bytes, List[Tuple[str, Any]]]:
    names = list(optimizer.variable_names)
    values = [np.asarray(v) for v in optimizer.variables]
    if len(names) != len(values):
        raise ValueError(
            f"Optimizer '{optimizer.name}' reports {len(values)} variables but {len(names)} "
            "variable names; it cannot be saved."
        )
    built_names = list(optimizer._trainable_variable_names)
    built = list(optimizer._trainable_variables)

    config = optimizer.get_config()
    learning_rate_callable = callable(config.get("learning_rate"))
    if learning_rate_callable:
        config = dict(config, learning_rate=None)
    from ferroptim import __version__

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ferroptim_version": __version__,
        "class_name": type(optimizer).__name__,
        "config": config,
        "learning_rate_callable": learning_rate_callable,
        "variables": [_spec(n, v) for n, v in zip(built_names, built)],
        "variables_saved": include_variables,
        "optimizer_variables": [_spec(n, v) for n, v in zip(names, values)],
        "exclude_from_weight_decay": [
            _exclusions(o, optimizer.built) for o in _optimizer_tree(optimizer)
        ],
    }
    try:
        encoded = json.dumps(header, default=_json_default, indent=1).encode("utf-8")
    except TypeError as error:
        # The state is still worth saving: `load_state` restores it into an optimizer built
        # by the caller's code.
        header["config"] = None
        header["config_error"] = str(error)
        encoded = json.dumps(header, default=_json_default, indent=1).encode("utf-8")
    members = [(f"optimizer/{i}.npy", v) for i, v in enumerate(values)]
    if include_variables:
        members += [(f"variables/{i}.npy", v) for i, v in enumerate(built)]
    return encoded, members


def _optimizer_tree(optimizer: Any) -> List[Any]:
    """The optimizer, then the optimizers it holds (LossScaleOptimizer, MultiOptimizer), depth
    first, in the order of their variables."""
    out = [optimizer]
    sub_optimizers = getattr(optimizer, "_sub_optimizers", None)
    if sub_optimizers is not None:
        for sub in sub_optimizers():
            out.extend(_optimizer_tree(sub))
    return out


def _literal_names(pattern: str) -> Optional[List[str]]:
    """The names of a pattern made of literal names joined by `|`, or None for any other."""
    names = pattern.split("|")
    if any(not _REGEX_SYNTAX.isdisjoint(name) for name in names):
        return None
    return names


def _exclusions(optimizer: Any, root_built: bool) -> Dict[str, Any]:
    built = optimizer._trainable_variables
    excluded = optimizer._exclude_from_weight_decay_vars
    pattern = optimizer._exclude_from_weight_decay_pattern
    indices = [i for i, v in enumerate(built) if any(v is e for e in excluded)]
    if pattern is None:
        return {"indices": indices, "pattern": None}
    literal = (
        isinstance(pattern.pattern, str)
        and pattern.flags == re.UNICODE
        and _literal_names(pattern.pattern) is not None
    )
    if literal or not root_built:
        return {"indices": indices, "pattern": pattern.pattern}
    # A regular expression is resolved here, by the code that set it, into the variables it
    # excludes: once the optimizer tree is built its variables never change (a sub-optimizer
    # that got none stays unbuilt), and a reader never has to run a file's regex.
    names = optimizer._trainable_variable_names
    matched = {i for i, name in enumerate(names) if re.search(pattern, name) is not None}
    return {"indices": sorted(set(indices) | matched), "pattern": None}


def _spec(name: str, value: Any) -> Dict[str, Any]:
    array = np.asarray(value)
    return {"name": str(name), "shape": list(array.shape), "dtype": array.dtype.name}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serializable")


# --- reading: the public functions -------------------------------------------------------------


def read_header(filepath: Any) -> Dict[str, Any]:
    """The validated header of a checkpoint (see the module docstring for its fields).

    Args:
        filepath: the checkpoint's path.

    Returns:
        A dict.
    """
    path = fspath(filepath)
    with Reader(path) as reader:
        return reader.header


def load(
    filepath: Any,
    var_list: Any = None,
    custom_objects: Optional[Mapping[str, Any]] = None,
    cls: Optional[type] = None,
) -> Any:
    """Create an optimizer from a checkpoint, build it on `var_list` and restore its state.

    Everything is read and checked before anything is assigned: a refused file leaves the
    variables in `var_list` as they were.

    Args:
        filepath: the checkpoint's path.
        var_list: the variables (list, tuple or dict name -> array, as given to `build`), with
            the names (keys of a dict; `variable_<i>` for a list), shapes and dtypes of the
            saved ones. Their values are overwritten in place with the saved ones when the
            file holds them. None only for a checkpoint of an optimizer that was never built.
        custom_objects: classes by name, for an optimizer class or a learning-rate schedule
            that is not built in.
        cls: the class the caller expects (`Adam.load(...)` passes Adam); None or
            `Optimizer` accepts any concrete optimizer.

    Returns:
        The optimizer.
    """
    path = fspath(filepath)
    with Reader(path) as reader:
        header = reader.header
        optimizer = _create(header, custom_objects, cls, path)
        commit = _prepare(optimizer, reader, var_list, restore_exclusions=True)
    commit()
    return optimizer


def load_state(optimizer: Any, filepath: Any, var_list: Any = None) -> None:
    """Restore a checkpoint's state into `optimizer`, keeping its configuration.

    Like Keras's `load_own_variables`, only the state is read: `iterations`, the learning rate
    when it is a float, the slots and every other entry of `variables`, and the variables'
    values when the file holds them. The checkpoint must come from an optimizer of the same
    class built on variables of the same names, shapes and dtypes. The weight-decay exclusions
    stay those of `optimizer`. Everything is read and checked before anything is assigned.

    Args:
        optimizer: the optimizer to restore (built, or not yet built when `var_list` is given:
            it is then built on `var_list` once the file's header and list of members are
            checked, as `build(var_list)` would, and stays built if the state is refused).
        filepath: the checkpoint's path.
        var_list: the variables to build on; None for a built optimizer (or the very variables
            it was built with).
    """
    path = fspath(filepath)
    with Reader(path) as reader:
        class_name = reader.header["class_name"]
        if class_name != type(optimizer).__name__:
            raise CheckpointError(
                f"{path} holds a '{class_name}' optimizer; it cannot be loaded into a "
                f"'{type(optimizer).__name__}'."
            )
        commit = _prepare(optimizer, reader, var_list, restore_exclusions=False)
    commit()


def _create(
    header: Dict[str, Any],
    custom_objects: Optional[Mapping[str, Any]],
    cls: Optional[type],
    path: str,
) -> Any:
    """The optimizer the header configures, of a concrete optimizer class at every depth."""
    from ferroptim.optimizers import _BUILTINS, Optimizer

    class_name = header["class_name"]
    found = (custom_objects or {}).get(class_name)
    if found is None and cls is not None and cls.__name__ == class_name:
        found = cls
    if found is None:
        found = _BUILTINS.get(class_name.lower())
    if not (isinstance(found, type) and issubclass(found, Optimizer)):
        raise CheckpointError(
            f"{path} holds an optimizer of class {abbreviated(class_name)}, which is not a "
            "ferroptim optimizer; pass custom classes in `custom_objects`."
        )
    if found is Optimizer:
        raise CheckpointError(_ABSTRACT.format(path=path, where="as its class"))
    if cls is not None and cls is not Optimizer and found is not cls:
        raise CheckpointError(
            f"{path} holds a '{class_name}' optimizer, not a '{cls.__name__}'. Load it with "
            f"`{class_name}.load` or `Optimizer.load`."
        )
    if header["learning_rate_callable"]:
        raise CheckpointError(
            f"{path} was saved from an optimizer whose learning rate is a callable, which "
            "a file cannot hold. Create the optimizer with that callable, then call "
            "`optimizer.load_state(filepath, var_list)`."
        )
    if header["config"] is None:
        raise CheckpointError(
            f"{path} holds no configuration (it could not be written: "
            f"{header.get('config_error')}). Create the optimizer, then call "
            "`optimizer.load_state(filepath, var_list)`."
        )
    try:
        optimizer = found.from_config(header["config"], custom_objects=custom_objects)
    except Exception as error:
        # Whatever the configuration makes the constructors raise, it came from the file.
        raise CheckpointError(
            f"{path}: the saved configuration does not create a {class_name}: {error}"
        ) from error
    for node in _optimizer_tree(optimizer)[1:]:
        if type(node) is Optimizer:
            raise CheckpointError(
                _ABSTRACT.format(path=path, where=f"for an optimizer inside its '{class_name}'")
            )
    return optimizer


_ABSTRACT = (
    "{path} names the abstract base class 'Optimizer' {where}; a checkpoint must name a "
    "concrete optimizer ('Adam', 'SGD', ...), or a subclass passed in `custom_objects`."
)


# --- reading: validate, then assign --------------------------------------------------------------


def _prepare(
    optimizer: Any, reader: Reader, var_list: Any, restore_exclusions: bool
) -> Callable[[], None]:
    """Check the file against `optimizer` and `var_list` and read every array; return the
    function that assigns it all (which cannot fail).

    Nothing the caller can see changes here, except that an unbuilt `optimizer` given
    `var_list` is built on it (as `build(var_list)` would).
    """
    header, path = reader.header, reader.path
    saved = header["variables"]
    build_on = None
    if var_list is None:
        if not optimizer.built and saved:
            raise CheckpointError(
                f"{path} was saved from an optimizer built on {len(saved)} variables; pass them "
                "as `var_list`."
            )
        names, variables = optimizer._trainable_variable_names, optimizer._trainable_variables
    else:
        if isinstance(var_list, (str, bytes)) or not (
            isinstance(var_list, Mapping) or hasattr(var_list, "__iter__")
        ):
            raise TypeError(
                "`var_list` must be a list, tuple or dict of arrays. Received: "
                f"{type(var_list).__name__}"
            )
        names, variables = optimizer._names_and_variables(var_list)
        if optimizer.built:
            if len(variables) != len(optimizer._trainable_variables) or any(
                a is not b for a, b in zip(variables, optimizer._trainable_variables)
            ):
                raise CheckpointError(
                    f"Optimizer '{optimizer.name}' is built on other variables than "
                    "`var_list`; pass None or the variables it was built with."
                )
        else:
            for name, variable in zip(names, variables):
                if not isinstance(variable, np.ndarray):
                    raise TypeError(
                        f"Variable '{name}' must be a NumPy array. Received: "
                        f"{type(variable).__name__}"
                    )
            build_on = var_list
            if not saved:
                # Saved before it was built: its state (the iteration count, a float learning
                # rate) belongs to the unbuilt table; `build` comes after, with fresh slots, as
                # the saved optimizer's would have at its first step.
                names, variables = [], []
    _mismatch(path, "variables", saved, [_spec(n, v) for n, v in zip(names, variables)])
    if saved:
        for name, variable in zip(names, variables):
            if header["variables_saved"] and not variable.flags.writeable:
                raise ValueError(f"Variable '{name}' is read-only; it must be writeable.")

    checked_after_build = build_on is not None and not saved
    if build_on is not None and saved:
        optimizer.build(build_on)
    exclusions: List[Any] = []
    if restore_exclusions and not checked_after_build:
        exclusions = _prepare_exclusions(optimizer, header["exclude_from_weight_decay"], path)

    table_names = list(optimizer.variable_names)
    table = [np.asarray(v) for v in optimizer.variables]
    _mismatch(
        path,
        "optimizer variables",
        header["optimizer_variables"],
        [_spec(n, v) for n, v in zip(table_names, table)],
    )
    values = [
        reader.read_array(f"optimizer/{i}.npy", v.shape, v.dtype) for i, v in enumerate(table)
    ]
    # `_checked_variables` refuses these too; checked here for the error that names the file.
    for name, value in zip(table_names, values):
        if name == "iteration" and value.shape == () and not 0 <= int(value):
            raise CheckpointError(f"{path}: an iteration count is negative ({int(value)})")
        if name == "learning_rate" and value.shape == () and not np.isfinite(value):
            raise CheckpointError(f"{path}: a learning rate is not finite ({value})")
    try:
        checked = optimizer._checked_variables(values)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {error}") from error

    parameters: List[Tuple[np.ndarray, np.ndarray]] = []
    if header["variables_saved"]:
        for i, variable in enumerate(variables):
            parameters.append(
                (variable, reader.read_array(f"variables/{i}.npy", variable.shape, variable.dtype))
            )

    if checked_after_build:
        # The saved state's entries (the iteration count and learning rates, markers and
        # arrays that `build` keeps) are assigned once the optimizer is built.
        optimizer.build(build_on)
        if restore_exclusions:
            exclusions = _prepare_exclusions(optimizer, header["exclude_from_weight_decay"], path)

    def assign() -> None:
        optimizer._commit_variables(checked)
        for variable, value in parameters:
            np.copyto(variable, value)
        for sub, excluded, pattern in exclusions:
            sub._set_exclusions(excluded, None)
            if pattern is not None:
                sub._exclude_from_weight_decay_pattern = pattern

    return lambda: optimizer._run_exclusive(assign)


def _prepare_exclusions(
    optimizer: Any, saved: List[Dict[str, Any]], path: str
) -> List[Tuple[Any, List[np.ndarray], Optional["re.Pattern[str]"]]]:
    """(optimizer, variables to exclude, literal pattern to keep) for each optimizer of the
    tree, checked against it. A built optimizer gets the variables its literal names match
    (as `re.search` would match them), so no pattern from the file runs in a step."""
    tree = _optimizer_tree(optimizer)
    if len(tree) != len(saved):
        raise CheckpointError(
            f"{path} holds weight-decay exclusions for {len(saved)} optimizers but "
            f"'{optimizer.name}' is made of {len(tree)}."
        )
    out = []
    for sub, exclusions in zip(tree, saved):
        variables = sub._trainable_variables
        indices = exclusions["indices"]
        if indices and indices[-1] >= len(variables):
            raise CheckpointError(
                f"{path}: a weight-decay exclusion of '{sub.name}' names variable "
                f"{indices[-1]}, but it has {len(variables)}."
            )
        pattern = exclusions["pattern"]
        literal = None if pattern is None else _literal_names(pattern)
        if pattern is not None and literal is None:
            raise CheckpointError(
                f"{path}: the weight-decay exclusion pattern of '{sub.name}' uses "
                f"regular-expression syntax ({abbreviated(pattern)}); a file carries only "
                "literal names, since a regular expression could make a step arbitrarily "
                "slow. Create the optimizer, call `exclude_from_weight_decay`, then "
                "`optimizer.load_state(filepath, var_list)`."
            )
        excluded = set(indices)
        keep = None
        if literal is not None:
            if sub.built:
                names = sub._trainable_variable_names
                excluded.update(
                    i for i, name in enumerate(names) if any(n in name for n in literal)
                )
            else:
                keep = re.compile(pattern)
        out.append((sub, [variables[i] for i in sorted(excluded)], keep))
    return out


def _mismatch(
    path: str, what: str, saved: List[Dict[str, Any]], actual: List[Dict[str, Any]]
) -> None:
    """Raise a CheckpointError naming the first difference between two spec lists."""
    if len(saved) != len(actual):
        raise CheckpointError(
            f"{path} holds {len(saved)} {what} but the optimizer has {len(actual)}: saved "
            f"{abbreviated([s['name'] for s in saved])}, here {[a['name'] for a in actual]}."
        )
    for i, (s, a) in enumerate(zip(saved, actual)):
        if s != a:
            raise CheckpointError(
                f"{path}: {what[:-1]} {i} does not match: saved '{s['name']}' with shape "
                f"{tuple(s['shape'])} and dtype {s['dtype']}, here '{a['name']}' with shape "
                f"{tuple(a['shape'])} and dtype {a['dtype']}."
            )

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
    - `"exclude_from_weight_decay"`: one `{"indices": [build positions], "pattern": regex or
      null}` for the optimizer, then one for each optimizer it holds (a LossScaleOptimizer's
      inner optimizer, a MultiOptimizer's sub-optimizers), depth first.
- `optimizer/<i>.npy`: entry i of `variables`, in NumPy's `.npy` format (no pickled objects).
- `variables/<i>.npy`: the i-th built variable, when `"variables_saved"`.

Writing is atomic: the archive goes to a temporary file in the destination's directory, is flushed
and `fsync`ed, then renamed over the destination (`os.replace`) and the directory is `fsync`ed.
A crash at any point leaves either the previous file or the complete new one (and, after a hard
crash, possibly a stray `.<name>.<random>.tmp` file beside it, which is never read).

Reading checks everything before it changes anything: the format and version, the class, every
name, shape and dtype against the optimizer and the variables it is given, each member's `.npy`
header and size, and each member's CRC-32; the arrays are read whole into memory first (so a
restore needs memory for one copy of the state), then assigned. A mismatch or a damaged file is a
ValueError (a wrong argument type a TypeError, an unreadable file an OSError), and the optimizer
and the variables are left as they were.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import zipfile
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load", "load_state", "read_header"]

FORMAT = "ferroptim.optimizer"
FORMAT_VERSION = 1
HEADER = "header.json"

# A header describes names and shapes only; anything larger is not one of ours.
_MAX_HEADER_BYTES = 64 * 2**20
# Fixed member timestamps make the bytes of a checkpoint a function of its content.
_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# Arrays are read in pieces of this many bytes (the zip reader copies each piece once).
_READ_CHUNK = 16 * 2**20


class CheckpointError(ValueError):
    """A checkpoint file that is damaged, of another format, or that does not match the
    optimizer or the variables it is loaded into."""


# --- writing -----------------------------------------------------------------------------------


def save(optimizer: Any, filepath: Any, include_variables: bool = True) -> None:
    """Write `optimizer`'s configuration and state to `filepath`, atomically.

    No step of `optimizer` runs while the file is written (a step started by another thread
    waits), so the file holds the state between two steps.

    Args:
        optimizer: a `ferroptim.optimizers.Optimizer`, built or not.
        filepath: a path (str or os.PathLike). An existing file is replaced.
        include_variables: also write the values of the variables the optimizer was built on
            (the model's parameters), so that loading restores them too.
    """
    path = _fspath(filepath)
    if not isinstance(include_variables, bool):
        raise TypeError(
            f"`include_variables` must be a bool. Received: include_variables={include_variables!r}"
        )

    def write() -> None:
        header, members = _snapshot(optimizer, include_variables)
        _write_atomically(path, header, members)

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
        "exclude_from_weight_decay": [_exclusions(o) for o in _optimizer_tree(optimizer)],
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


def _exclusions(optimizer: Any) -> Dict[str, Any]:
    built = optimizer._trainable_variables
    excluded = optimizer._exclude_from_weight_decay_vars
    pattern = optimizer._exclude_from_weight_decay_pattern
    return {
        "indices": [i for i, v in enumerate(built) if any(v is e for e in excluded)],
        "pattern": None if pattern is None else pattern.pattern,
    }


def _restore_exclusions(optimizer: Any, saved: List[Dict[str, Any]], path: str) -> None:
    tree = _optimizer_tree(optimizer)
    if len(tree) != len(saved):
        raise CheckpointError(
            f"{path} holds weight-decay exclusions for {len(saved)} optimizers but "
            f"'{optimizer.name}' is made of {len(tree)}."
        )
    for sub, exclusions in zip(tree, saved):
        variables = sub._trainable_variables
        if any(i >= len(variables) for i in exclusions["indices"]):
            raise CheckpointError(
                f"{path}: a weight-decay exclusion of '{sub.name}' names a variable it does not "
                "have."
            )
    for sub, exclusions in zip(tree, saved):
        variables = sub._trainable_variables
        sub.exclude_from_weight_decay(var_list=[variables[i] for i in exclusions["indices"]])
        if exclusions["pattern"] is not None:
            sub._exclude_from_weight_decay_pattern = re.compile(exclusions["pattern"])


def _spec(name: str, value: Any) -> Dict[str, Any]:
    array = np.asarray(value)
    return {"name": str(name), "shape": list(array.shape), "dtype": array.dtype.name}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serializable")


def _fspath(filepath: Any) -> str:
    try:
        path = os.fspath(filepath)
    except TypeError:
        raise TypeError(
            f"`filepath` must be a path (str or os.PathLike). Received: {type(filepath).__name__}"
        ) from None
    return os.fsdecode(path)


def _member_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _write_atomically(path: str, header: bytes, members: List[Tuple[str, Any]]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp"
    )
    # "x": a fresh file with the permissions of any file the user creates (umask applies).
    handle = open(temporary, "xb")
    try:
        with handle:
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                archive.writestr(_member_info(HEADER), header)
                for name, value in members:
                    _write_array(archive, name, value)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _write_array(archive: zipfile.ZipFile, name: str, value: Any) -> None:
    array = np.asarray(value)
    # The .npy header adds at most a few hundred bytes.
    large = array.nbytes + 4096 >= zipfile.ZIP64_LIMIT
    with archive.open(_member_info(name), "w", force_zip64=large) as out:
        np.lib.format.write_array(out, array, allow_pickle=False)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable. Not every platform can open a directory (Windows).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reading -----------------------------------------------------------------------------------


def read_header(filepath: Any) -> Dict[str, Any]:
    """The validated header of a checkpoint (see the module docstring for its fields).

    Args:
        filepath: the checkpoint's path.

    Returns:
        A dict.
    """
    path = _fspath(filepath)
    with _open(path) as archive:
        return _read_header(archive, path)


def load(
    filepath: Any,
    var_list: Any = None,
    custom_objects: Optional[Mapping[str, Any]] = None,
    cls: Optional[type] = None,
) -> Any:
    """Create an optimizer from a checkpoint, build it on `var_list` and restore its state.

    Args:
        filepath: the checkpoint's path.
        var_list: the variables (list, tuple or dict name -> array, as given to `build`), with
            the names (keys of a dict; `variable_<i>` for a list), shapes and dtypes of the
            saved ones. Their values are overwritten in place with the saved ones when the
            file holds them. None only for a checkpoint of an optimizer that was never built.
        custom_objects: classes by name, for an optimizer class or a learning-rate schedule
            that is not built in.
        cls: the class the caller expects (`Adam.load(...)` passes Adam); None or
            `Optimizer` accepts any.

    Returns:
        The optimizer.
    """
    from ferroptim.optimizers import Optimizer, _BUILTINS

    path = _fspath(filepath)
    with _open(path) as archive:
        header = _read_header(archive, path)
        class_name = header["class_name"]
        found = (custom_objects or {}).get(class_name)
        if found is None and cls is not None and cls.__name__ == class_name:
            found = cls
        if found is None:
            found = _BUILTINS.get(class_name.lower())
        if not (isinstance(found, type) and issubclass(found, Optimizer)):
            raise CheckpointError(
                f"{path} holds an optimizer of class '{class_name}', which is not a "
                "ferroptim optimizer; pass custom classes in `custom_objects`."
            )
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
        except (TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path}: the saved configuration does not create a {class_name}: {error}"
            ) from error
        _build_and_restore(optimizer, archive, header, var_list, path)
    _restore_exclusions(optimizer, header["exclude_from_weight_decay"], path)
    return optimizer


def load_state(optimizer: Any, filepath: Any, var_list: Any = None) -> None:
    """Restore a checkpoint's state into `optimizer`, keeping its configuration.

    Like Keras's `load_own_variables`, only the state is read: `iterations`, the learning rate
    when it is a float, the slots and every other entry of `variables`, and the variables'
    values when the file holds them. The checkpoint must come from an optimizer of the same
    class built on variables of the same names, shapes and dtypes. The weight-decay exclusions
    stay those of `optimizer`.

    Args:
        optimizer: the optimizer to restore (built, or not yet built when `var_list` is given:
            it is then built on `var_list` first, and stays built if the restore is refused).
        filepath: the checkpoint's path.
        var_list: the variables to build on; None for a built optimizer (or the very variables
            it was built with).
    """
    path = _fspath(filepath)
    with _open(path) as archive:
        header = _read_header(archive, path)
        class_name = header["class_name"]
        if class_name != type(optimizer).__name__:
            raise CheckpointError(
                f"{path} holds a '{class_name}' optimizer; it cannot be loaded into a "
                f"'{type(optimizer).__name__}'."
            )
        _build_and_restore(optimizer, archive, header, var_list, path)


def _open(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path, "r")
    except OSError:
        raise
    except Exception as error:
        raise CheckpointError(
            f"{path} is not a ferroptim checkpoint (not a complete ZIP archive): {error}"
        ) from error


def _read_header(archive: zipfile.ZipFile, path: str) -> Dict[str, Any]:
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid ferroptim checkpoint: {what}")

    try:
        info = archive.getinfo(HEADER)
    except KeyError:
        raise bad(f"it has no '{HEADER}' member") from None
    if info.file_size > _MAX_HEADER_BYTES:
        raise bad(f"its header is {info.file_size} bytes long")
    try:
        header = json.loads(archive.read(info).decode("utf-8"))
    except OSError:
        raise
    except Exception as error:
        raise bad(f"its header cannot be read: {error}") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad(f"its header does not declare the format '{FORMAT}'")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}; this ferroptim reads version "
            f"{FORMAT_VERSION} and older. Upgrade ferroptim to read it."
        )
    for key, kind in (
        ("class_name", str),
        ("learning_rate_callable", bool),
        ("variables", list),
        ("variables_saved", bool),
        ("optimizer_variables", list),
        ("exclude_from_weight_decay", list),
    ):
        if not isinstance(header.get(key), kind):
            raise bad(f"'{key}' is missing or not a {kind.__name__}")
    if not isinstance(header.get("config", 0), (dict, type(None))):
        raise bad("'config' is missing or not a dict")
    for key in ("variables", "optimizer_variables"):
        for entry in header[key]:
            if not _valid_spec(entry):
                raise bad(f"an entry of '{key}' is not a {{name, shape, dtype}} record: {entry!r}")
    for exclusions in header["exclude_from_weight_decay"]:
        if (
            not isinstance(exclusions, dict)
            or not isinstance(exclusions.get("indices"), list)
            or not all(_is_int(i) and i >= 0 for i in exclusions["indices"])
            or not (exclusions.get("pattern") is None or isinstance(exclusions["pattern"], str))
        ):
            raise bad(f"'exclude_from_weight_decay' is malformed: {exclusions!r}")
        if exclusions["pattern"] is not None:
            try:
                re.compile(exclusions["pattern"])
            except re.error as error:
                raise bad(f"a weight-decay exclusion pattern does not compile: {error}") from error
    return header


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_spec(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and isinstance(entry.get("shape"), list)
        and all(_is_int(n) and n >= 0 for n in entry["shape"])
        and _is_numeric_dtype(entry.get("dtype"))
    )


def _is_numeric_dtype(name: Any) -> bool:
    # Optimizer state is numbers (float slots, an int64 iteration count, Adafactor's int32
    # counter); anything else (objects, strings, records) is refused before NumPy reads it.
    if not isinstance(name, str):
        return False
    try:
        dtype = np.dtype(name)
    except Exception:
        return False
    return dtype.kind in "biuf" and dtype.name == name


def _mismatch(path: str, what: str, saved: List[Dict[str, Any]], actual: List[Dict[str, Any]]) -> None:
    """Raise a CheckpointError naming the first difference between two spec lists."""
    if len(saved) != len(actual):
        raise CheckpointError(
            f"{path} holds {len(saved)} {what} but the optimizer has {len(actual)}: saved "
            f"{[s['name'] for s in saved]}, here {[a['name'] for a in actual]}."
        )
    for i, (s, a) in enumerate(zip(saved, actual)):
        if s != a:
            raise CheckpointError(
                f"{path}: {what[:-1]} {i} does not match: saved '{s['name']}' with shape "
                f"{tuple(s['shape'])} and dtype {s['dtype']}, here '{a['name']}' with shape "
                f"{tuple(a['shape'])} and dtype {a['dtype']}."
            )


def _build_and_restore(
    optimizer: Any, archive: zipfile.ZipFile, header: Dict[str, Any], var_list: Any, path: str
) -> None:
    if not header["variables"] and var_list is not None and not optimizer.built:
        # Saved before it was built (the iteration count and a float learning rate only): the
        # state is restored first, then the optimizer is built with fresh slots, as the saved
        # one would have been at its first step.
        _build(optimizer, header, None, path)
        _restore(optimizer, archive, header, path)
        optimizer.build(var_list)
        return
    _build(optimizer, header, var_list, path)
    _restore(optimizer, archive, header, path)


def _build(optimizer: Any, header: Dict[str, Any], var_list: Any, path: str) -> None:
    """Check `var_list` (or the built variables) against the header; build when needed."""
    saved = header["variables"]
    if var_list is None:
        if optimizer.built or not saved:
            names, variables = optimizer._trainable_variable_names, optimizer._trainable_variables
        else:
            raise CheckpointError(
                f"{path} was saved from an optimizer built on {len(saved)} variables; pass them "
                "as `var_list`."
            )
    else:
        if isinstance(var_list, (str, bytes)) or not (
            isinstance(var_list, Mapping) or hasattr(var_list, "__iter__")
        ):
            raise TypeError(
                "`var_list` must be a list, tuple or dict of arrays. Received: "
                f"{type(var_list).__name__}"
            )
        names, variables = optimizer._names_and_variables(var_list)
        if optimizer.built and (
            len(variables) != len(optimizer._trainable_variables)
            or any(a is not b for a, b in zip(variables, optimizer._trainable_variables))
        ):
            raise CheckpointError(
                f"Optimizer '{optimizer.name}' is built on other variables than `var_list`; "
                "pass None or the variables it was built with."
            )
        for name, variable in zip(names, variables):
            if not isinstance(variable, np.ndarray):
                raise TypeError(
                    f"Variable '{name}' must be a NumPy array. Received: "
                    f"{type(variable).__name__}"
                )
    _mismatch(path, "variables", saved, [_spec(n, v) for n, v in zip(names, variables)])
    if var_list is not None and not optimizer.built:
        optimizer.build(var_list)


def _restore(optimizer: Any, archive: zipfile.ZipFile, header: Dict[str, Any], path: str) -> None:
    """Read every saved array, check it, then assign them all under the step guard."""
    names = list(optimizer.variable_names)
    current = [np.asarray(v) for v in optimizer.variables]
    _mismatch(
        path,
        "optimizer variables",
        header["optimizer_variables"],
        [_spec(n, v) for n, v in zip(names, current)],
    )
    values = [
        _read_array(archive, f"optimizer/{i}.npy", v.shape, v.dtype, path)
        for i, v in enumerate(current)
    ]
    # `_assign_variables` refuses these too (before any write); checked here for the error
    # that names the file.
    for name, value in zip(names, values):
        if name == "iteration" and value.shape == () and not 0 <= int(value):
            raise CheckpointError(f"{path}: an iteration count is negative ({int(value)})")
        if name == "learning_rate" and value.shape == () and not np.isfinite(value):
            raise CheckpointError(f"{path}: a learning rate is not finite ({value})")
    parameters: List[Tuple[np.ndarray, np.ndarray]] = []
    if header["variables_saved"]:
        for i, variable in enumerate(optimizer._trainable_variables):
            parameters.append(
                (variable, _read_array(archive, f"variables/{i}.npy", variable.shape,
                                       variable.dtype, path))
            )

    def assign() -> None:
        # Every value is checked (and the iteration count's range) before the first write.
        optimizer._assign_variables(values)
        for variable, value in parameters:
            np.copyto(variable, value)

    try:
        optimizer._run_exclusive(assign)
    except (TypeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{path}: {error}") from error


def _read_array(
    archive: zipfile.ZipFile, member: str, shape: Tuple[int, ...], dtype: np.dtype, path: str
) -> np.ndarray:
    """One `.npy` member, checked against the expected shape and dtype before its data is read."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise CheckpointError(f"{path} has no member '{member}'") from None
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                saved_shape, fortran, saved_dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                saved_shape, fortran, saved_dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise CheckpointError(f"{path}: '{member}' has .npy version {version}")
            if (
                tuple(saved_shape) != tuple(shape)
                or saved_dtype.hasobject
                or saved_dtype.newbyteorder("=") != np.dtype(dtype).newbyteorder("=")
            ):
                raise CheckpointError(
                    f"{path}: '{member}' holds shape {tuple(saved_shape)} and dtype "
                    f"{saved_dtype}, where shape {tuple(shape)} and dtype {dtype} are expected"
                )
            array = np.empty(math.prod(shape), dtype=saved_dtype)
            buffer = memoryview(array).cast("B")
            position = 0
            while position < len(buffer):
                chunk = stream.read(min(_READ_CHUNK, len(buffer) - position))
                if not chunk:
                    raise CheckpointError(f"{path}: '{member}' is truncated")
                buffer[position:position + len(chunk)] = chunk
                position += len(chunk)
            # Reading to the end makes the zip reader verify the member's CRC-32.
            if stream.read(1):
                raise CheckpointError(f"{path}: '{member}' has data after its array")
    except (CheckpointError, OSError):
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: '{member}' cannot be read: {error}") from error
    array = array.reshape(shape, order="F" if fortran else "C")
    if array.dtype != np.dtype(dtype):
        array = array.astype(dtype)
    return array

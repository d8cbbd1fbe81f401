"""The file layer of checkpoints: path checks, atomic writing, and the validated reading of
an archive (see `ferroptim.optimizers.checkpoint` for the format and its guarantees).

Nothing here knows about optimizers: `checkpoint` maps an optimizer to and from the header and
the arrays this module writes and reads.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import shutil
import stat
import zipfile
from typing import Any, Dict, List, Tuple

import numpy as np

FORMAT = "ferroptim.optimizer"
FORMAT_VERSION = 1
HEADER = "header.json"

# A header describes names and shapes only; anything larger is not one of ours.
_MAX_HEADER_BYTES = 64 * 2**20
# A pattern of literal names this long is matched against every name when loading; longer ones
# are not something a person types.
_MAX_PATTERN_CHARS = 4096
# What may precede an array's data in a `.npy` member: the magic string, the version, the
# header length (4 bytes at most) and the header text (NumPy refuses more than 10000 bytes).
_MAX_NPY_PREAMBLE = 6 + 2 + 4 + 10000
# Python's own bound on the digits of an int it parses (3.11+), also applied by older Pythons
# here: parsing a longer one is quadratic.
_MAX_INT_DIGITS = 4300
# Fixed member timestamps make the bytes of a checkpoint a function of its content.
_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# Arrays are read in pieces of this many bytes (the zip reader copies each piece once).
_READ_CHUNK = 16 * 2**20
# A temporary file's name when the file system reports no limit on a name.
_DEFAULT_NAME_MAX = 255


class CheckpointError(ValueError):
    """A checkpoint file that is damaged, of another format, or that does not match the
    optimizer or the variables it is loaded into."""


# --- paths -----------------------------------------------------------------------------------


def fspath(filepath: Any) -> str:
    """`filepath` as a str; a TypeError for anything that is not a path."""
    try:
        path = os.fspath(filepath)
    except TypeError:
        raise TypeError(
            f"`filepath` must be a path (str or os.PathLike). Received: {type(filepath).__name__}"
        ) from None
    return os.fsdecode(path)


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _require_regular_file(mode: int, path: str, what: str) -> None:
    """Raise an OSError unless `mode` is a regular file's (IsADirectoryError for a directory,
    shutil.SpecialFileError for anything else)."""
    if stat.S_ISREG(mode):
        return
    message = f"`filepath` must be {what}. Received: filepath={path!r}, {_kind(mode)}"
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, message)
    raise shutil.SpecialFileError(message)


# --- writing -----------------------------------------------------------------------------------


def _member_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def check_destination(path: str) -> None:
    """Refuse to replace anything but a regular file (a missing path is fine)."""
    try:
        # lstat: a symbolic link is refused as such, whatever it points to.
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    _require_regular_file(
        mode, path, "a new name or a regular file (the only kind `save` replaces)"
    )


def _name_max(directory: str) -> int:
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        return _DEFAULT_NAME_MAX
    return limit if limit > 0 else _DEFAULT_NAME_MAX


def _temporary_name(directory: str, name: str) -> str:
    """`.<name>.<random>.tmp`, with `name` shortened so that the whole fits the file system's
    limit on a name (counted in encoded bytes)."""
    suffix = f".{secrets.token_hex(6)}.tmp"
    budget = _name_max(directory) - len(os.fsencode("." + suffix))
    stem = name
    if len(os.fsencode(stem)) > budget:
        # Shortened by whole characters, so that no multi-byte character is cut in two.
        low, high = 0, len(stem)
        while low < high:
            middle = (low + high + 1) // 2
            if len(os.fsencode(stem[:middle])) <= budget:
                low = middle
            else:
                high = middle - 1
        stem = stem[:low]
    return f".{stem}{suffix}"


def write_atomically(path: str, header: bytes, members: List[Tuple[str, Any]]) -> None:
    """Write the archive (`header`, then each `(name, array)` as a `.npy` member) to a
    temporary file beside `path`, `fsync` it, rename it over `path`, `fsync` the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, _temporary_name(directory, os.path.basename(path)))
    # "x": a fresh file with the permissions of any file the user creates (umask applies);
    # O_EXCL also refuses to follow a symbolic link planted at the temporary name.
    handle = open(temporary, "xb")
    try:
        with handle:
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                archive.writestr(_member_info(HEADER), header)
                for name, value in members:
                    _write_array(archive, name, value)
            handle.flush()
            os.fsync(handle.fileno())
        # Again at the last moment: something may have appeared at the path meanwhile.
        check_destination(path)
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


# --- reading: the file -------------------------------------------------------------------------


def _open_regular_file(path: str) -> Any:
    """`path` opened for reading, refused unless it is a regular file, without ever waiting."""
    # Checked before opening (opening some devices has effects of its own), then again on
    # the descriptor, in case the path was replaced in between. O_NONBLOCK: opening a FIFO
    # would otherwise wait for a writer.
    _require_regular_file(os.stat(path).st_mode, path, "a regular file")
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    fd = os.open(path, flags)
    try:
        _require_regular_file(os.fstat(fd).st_mode, path, "a regular file")
        if hasattr(os, "O_NONBLOCK"):
            # Only the open needed it; reads of a regular file are left as usual.
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class Reader:
    """An open checkpoint whose header and list of members are validated.

    Nothing in the file is trusted: the members must be exactly those the header describes,
    stored uncompressed with consistent sizes, and every read is bounded (the header by
    `_MAX_HEADER_BYTES`, an array by the size the optimizer expects).
    """

    def __init__(self, path: str):
        self.path = path
        self._handle = _open_regular_file(path)
        try:
            try:
                self.archive = zipfile.ZipFile(self._handle, "r")
            except OSError:
                raise
            except Exception as error:
                raise CheckpointError(
                    f"{path} is not a ferroptim checkpoint (not a complete ZIP archive): {error}"
                ) from error
            self._check_entries()
            self.header = self._read_header()
            self._check_members()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        archive = getattr(self, "archive", None)
        if archive is not None:
            archive.close()
        self._handle.close()

    def _bad(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path} is not a valid ferroptim checkpoint: {what}")

    def _check_entries(self) -> None:
        seen = set()
        for info in self.archive.infolist():
            name = info.filename
            if name in seen:
                raise self._bad(f"it has more than one member named {name!r}")
            seen.add(name)
            if info.flag_bits & 0x1:
                raise self._bad(f"its member {name!r} is encrypted")
            # Nothing is inflated: a compressed member could declare any size and expand to
            # far more than the file (a "zip bomb").
            if info.compress_type != zipfile.ZIP_STORED:
                raise self._bad(
                    f"its member {name!r} is compressed (method {info.compress_type}); the "
                    "members of a checkpoint are stored uncompressed"
                )
            if info.compress_size != info.file_size:
                raise self._bad(
                    f"its member {name!r} declares {info.file_size} bytes but occupies "
                    f"{info.compress_size}"
                )

    def _read_header(self) -> Dict[str, Any]:
        bad = self._bad
        try:
            info = self.archive.getinfo(HEADER)
        except KeyError:
            raise bad(f"it has no '{HEADER}' member") from None
        if info.file_size > _MAX_HEADER_BYTES:
            raise bad(f"its header is {info.file_size} bytes long")
        try:
            with self.archive.open(info) as stream:
                # At most one byte more than allowed, whatever the member declares; reading
                # to its end makes the zip reader check its CRC-32.
                data = stream.read(_MAX_HEADER_BYTES + 1)
            if len(data) > _MAX_HEADER_BYTES:
                raise bad(f"its header is longer than {_MAX_HEADER_BYTES} bytes")
            header: Dict[str, Any] = json.loads(data.decode("utf-8"), parse_int=_parse_int)
        except (CheckpointError, OSError):
            raise
        except Exception as error:
            raise bad(f"its header cannot be read: {error}") from error
        _check_header(header, self.path)
        return header

    def _check_members(self) -> None:
        header = self.header
        count = len(header["optimizer_variables"])
        expected = [HEADER] + [f"optimizer/{i}.npy" for i in range(count)]
        if header["variables_saved"]:
            expected += [f"variables/{i}.npy" for i in range(len(header["variables"]))]
        present = set(self.archive.namelist())
        for name in expected:
            if name not in present:
                raise CheckpointError(f"{self.path} has no member '{name}'")
        extra = present.difference(expected)
        if extra:
            raise self._bad(
                f"it has members that its header does not describe: {sorted(extra)[:5]}"
            )

    def read_array(self, member: str, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """One `.npy` member, checked against the expected shape and dtype before its data is
        read; the member's size must be that of the expected array."""
        path = self.path
        info = self.archive.getinfo(member)
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        # Bounds every read below (NumPy reads a header of whatever length it declares).
        if info.file_size > nbytes + _MAX_NPY_PREAMBLE:
            raise CheckpointError(
                f"{path}: '{member}' has data after its array ({info.file_size} bytes for an "
                f"array of {nbytes})"
            )
        try:
            with self.archive.open(info) as stream:
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
                data_size = info.file_size - stream.tell()
                if data_size < nbytes:
                    raise CheckpointError(
                        f"{path}: '{member}' is truncated ({data_size} of {nbytes} bytes)"
                    )
                if data_size > nbytes:
                    raise CheckpointError(
                        f"{path}: '{member}' has data after its array ({data_size} bytes for "
                        f"an array of {nbytes})"
                    )
                array = np.empty(math.prod(shape), dtype=saved_dtype)
                buffer = memoryview(array.data).cast("B")
                position = 0
                while position < len(buffer):
                    chunk = stream.read(min(_READ_CHUNK, len(buffer) - position))
                    if not chunk:
                        raise CheckpointError(f"{path}: '{member}' is truncated")
                    buffer[position : position + len(chunk)] = chunk
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


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _check_header(header: Any, path: str) -> None:
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid ferroptim checkpoint: {what}")

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
        indices = exclusions.get("indices") if isinstance(exclusions, dict) else None
        pattern = exclusions.get("pattern") if isinstance(exclusions, dict) else None
        if (
            not isinstance(indices, list)
            or not all(_is_int(i) and i >= 0 for i in indices)
            # As written: each position once, in order (a long list of repeats would make
            # every weight-decay look-up of the first step slow).
            or any(a >= b for a, b in zip(indices, indices[1:]))
            or not (pattern is None or isinstance(pattern, str))
        ):
            raise bad(f"'exclude_from_weight_decay' is malformed: {abbreviated(exclusions)}")
        if pattern is not None:
            if len(pattern) > _MAX_PATTERN_CHARS:
                raise bad(
                    f"a weight-decay exclusion pattern is {len(pattern)} characters long (at "
                    f"most {_MAX_PATTERN_CHARS})"
                )
            try:
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError) as error:
                raise bad(f"a weight-decay exclusion pattern does not compile: {error}") from error


def abbreviated(value: Any) -> str:
    """`repr(value)`, cut at 200 characters: a value from a file may be arbitrarily long."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


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

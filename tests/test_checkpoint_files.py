"""Checkpoint files from a hostile source, and hostile places to save them.

A file given to `Optimizer.load` / `load_state` may have been crafted: zip bombs, sizes that lie,
members that are missing, repeated or unexpected, a path that is a FIFO, a device or a
directory, a weight-decay exclusion pattern that would make a step hang, a class name that is no
concrete optimizer. Each is refused before anything changes: a ValueError for the contents, an
OSError for a path that is not a regular file, with the caller's arrays, the optimizer's slots
and `iterations` as they were, in bounded time and memory. `save` replaces only a regular file,
keeps its temporary name within the file system's limit, and leaves the previous file whole when
the disk fills up.
"""

import bz2
import contextlib
import errno
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.optimizers import _checkpoint_file, checkpoint

OPT = fo.optimizers
# What a refused file may cost: no read beyond what the optimizer expects, no inflation.
PEAK_BYTES = 4 * 2**20
# Generous for a refusal that does not wait on anything; a blocked open would take the whole
# `UNBLOCK_AFTER` that the tests give it before they unblock it themselves.
QUICK_SECONDS = 1.0
UNBLOCK_AFTER = 3.0


def _params():
    rng = np.random.default_rng(3)
    return {
        "dense/kernel": np.asfortranarray(rng.standard_normal((6, 4)).astype(np.float32)),
        "dense/bias": rng.standard_normal(4),
        "out/kernel": rng.standard_normal((4, 3)).astype(np.float32),
        "out/bias": rng.standard_normal(3).astype(np.float32),
    }


def _grads(params, step):
    rng = np.random.default_rng(100 + step)
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


def _adam():
    opt = OPT.Adam(learning_rate=0.01, weight_decay=0.05, use_ema=True)
    opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


def _trained(make=_adam, steps=3):
    params = _params()
    opt = make()
    for step in range(steps):
        opt.apply(_grads(params, step), params)
    return opt, params


def _fresh(params):
    return {k: np.zeros_like(v, order="K") for k, v in params.items()}


class Snapshot:
    """Copies of everything a load could change; `check()` asserts that nothing did."""

    def __init__(self, opt, params):
        self.opt, self.params = opt, dict(params)
        self.values = {k: v.copy(order="K") for k, v in params.items()}
        self.variables = [np.array(v, copy=True) for v in opt.variables]
        self.names = list(opt.variable_names)
        self.iterations = opt.iterations
        self.built = opt.built
        self.config = opt.get_config()
        self.excluded = list(opt._exclude_from_weight_decay_vars)
        self.pattern = opt._exclude_from_weight_decay_pattern

    def check(self):
        for k, v in self.params.items():
            np.testing.assert_array_equal(v, self.values[k], err_msg=f"parameter {k} changed")
        assert self.opt.built == self.built
        assert list(self.opt.variable_names) == self.names
        for name, now, before in zip(self.names, self.opt.variables, self.variables):
            np.testing.assert_array_equal(now, before, err_msg=f"{name} changed")
        assert self.opt.iterations == self.iterations
        assert self.opt.get_config() == self.config
        assert [id(v) for v in self.opt._exclude_from_weight_decay_vars] == [
            id(v) for v in self.excluded
        ]
        assert self.opt._exclude_from_weight_decay_pattern is self.pattern


def _refused(path, error, match):
    """`load_state` into a trained optimizer and `Optimizer.load` into fresh arrays both refuse
    `path` with `error` matching `match`, quickly and within `PEAK_BYTES`, changing nothing."""
    opt, params = _trained()
    snapshot = Snapshot(opt, params)
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(error, match=match):
            opt.load_state(path)
        snapshot.check()
        fresh = _fresh(params)
        before = {k: v.copy() for k, v in fresh.items()}
        with pytest.raises(error, match=match):
            OPT.Optimizer.load(path, fresh)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for k in fresh:
        np.testing.assert_array_equal(fresh[k], before[k], err_msg=f"parameter {k} changed")
    assert elapsed < QUICK_SECONDS
    assert peak < PEAK_BYTES, f"refusing the file took {peak} bytes"


def _members_of(path):
    with zipfile.ZipFile(path) as archive:
        return [(i.filename, archive.read(i)) for i in archive.infolist()]


@pytest.fixture
def good(tmp_path):
    """A checkpoint of the trained Adam, and its members as (name, bytes)."""
    opt, _ = _trained()
    path = tmp_path / "good.ckpt"
    opt.save(path)
    members = _members_of(path)
    return path, members


# --- crafting ZIP archives ----------------------------------------------------------------------

STORED, DEFLATED, BZIP2 = 0, 8, 12


def _zip(members):
    """A ZIP archive whose every field is given: each member is a dict with `name` and `data`
    (the bytes as stored), and optionally `method`, `size` (the uncompressed size it declares),
    `csize` (the stored size it declares), `crc` and `flags`."""
    out, directory = bytearray(), bytearray()
    for m in members:
        name, data, method = m["name"].encode(), m["data"], m.get("method", STORED)
        flags = m.get("flags", 0)
        size = m.get("size", len(data))
        csize = m.get("csize", len(data))
        crc = m.get("crc", zlib.crc32(data))
        offset = len(out)
        # The fields the local header and the central directory entry share: version needed,
        # flags, method, DOS time and date (1980-01-01), crc, sizes, name and extra lengths.
        shared = (20, flags, method, 0, 0x21, crc, csize, size, len(name), 0)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, *shared) + name + data
        # Central entry: "version made by" first; after the shared fields the comment length,
        # disk number, internal and external attributes, and the local header's offset.
        directory += (
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *shared, 0, 0, 0, 0o644 << 16, offset)
            + name
        )
    start = len(out)
    out += directory
    out += struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), start, 0
    )
    return bytes(out)


def _craft(tmp_path, members, **changes):
    """The good members with some replaced: `changes` maps a member name to the fields that
    replace its own (None drops it); `extra` is a list of members appended."""
    extra = changes.pop("extra", [])
    out = []
    for name, data in members:
        change = changes.get(name, {})
        if change is None:
            continue
        out.append(dict({"name": name, "data": data}, **change))
    path = tmp_path / "crafted.ckpt"
    path.write_bytes(_zip(out + extra))
    return path


needs_fifos = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX-only")
needs_unix_sockets = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs UNIX sockets")


def _fifo(tmp_path):
    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)
    return fifo


@contextlib.contextmanager
def _bound_socket(tmp_path, monkeypatch):
    """A UNIX socket bound at `tmp_path / "s.ckpt"`, that path given while it is open."""
    # Bound by a relative name: a socket's address is limited to about 100 bytes.
    monkeypatch.chdir(tmp_path)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("s.ckpt")
        yield tmp_path / "s.ckpt"


def _craft_one(tmp_path, members, name, **fields):
    """`_craft` with one member's fields replaced."""
    return _craft(tmp_path, members, **{name: fields})


def _declaring(real):
    """The fields by which a member declares itself the bytes `real`: their size and crc."""
    return {"size": len(real), "crc": zlib.crc32(real)}


def _deflate_bomb(megabytes, byte=b"\0"):
    """Raw deflate data that inflates to `megabytes` MiB of `byte`, made without compressing
    them: one compressed MiB, repeated (each ends on a full flush, so each stands alone)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(byte * 2**20) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * megabytes + compressor.flush()


def _deflated(data):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _header(members):
    return json.loads(dict(members)["header.json"])


def _with_header(members, edit):
    header = _header(members)
    edit(header)
    return {"header.json": {"data": json.dumps(header).encode()}}


def test_the_crafting_helper_writes_what_the_reader_accepts(good, tmp_path):
    # The control for every crafted file below: the good members rewritten by `_zip` load.
    path, members = good
    copy = _craft(tmp_path, members)
    opt, params = _trained()
    restored = OPT.Optimizer.load(copy, _fresh(params))
    for a, b in zip(restored.variables, opt.variables):
        np.testing.assert_array_equal(a, b)


# --- resources: zip bombs, lying sizes, members -------------------------------------------------


@pytest.mark.parametrize("declared", ["the real header's size", "its inflated size"])
def test_a_header_that_inflates_far_beyond_its_file_size_is_refused_unread(
    good, tmp_path, declared
):
    # 200 KB in the file, 200 MiB inflated, whatever size the member declares.
    path, members = good
    real = dict(members)["header.json"]
    lie = _declaring(real) if declared == "the real header's size" else {"size": 200 * 2**20}
    data = _deflate_bomb(200, b" ")
    bomb = _craft_one(tmp_path, members, "header.json", data=data, method=DEFLATED, **lie)
    assert bomb.stat().st_size < 300_000
    _refused(bomb, ValueError, "'header.json' is compressed")


@pytest.mark.parametrize("method", ["deflate", "bzip2"])
def test_an_array_member_that_inflates_beyond_its_declared_size_is_refused_unread(
    good, tmp_path, method
):
    path, members = good
    real = dict(members)["optimizer/2.npy"]
    if method == "deflate":
        data, number = _deflate_bomb(100), DEFLATED
    else:
        # A few dozen bytes that inflate to 16 MiB in a single call of the decompressor.
        data, number = bz2.compress(bytes(2**24)), BZIP2
    bomb = _craft_one(
        tmp_path, members, "optimizer/2.npy", data=data, method=number, **_declaring(real)
    )
    _refused(bomb, ValueError, "'optimizer/2.npy' is compressed")


def test_a_member_compressed_honestly_is_refused_too(good, tmp_path):
    # The format stores members uncompressed; nothing is inflated, whatever it declares.
    path, members = good
    real = dict(members)["variables/0.npy"]
    honest = {"data": _deflated(real), "method": DEFLATED, **_declaring(real)}
    path = _craft_one(tmp_path, members, "variables/0.npy", **honest)
    _refused(path, ValueError, "'variables/0.npy' is compressed")


LIES = {
    # A stored member whose two sizes disagree.
    "sizes disagree": ("optimizer/2.npy", lambda d: {"size": len(d) + 8}, "declares"),
    # Both sizes far beyond the data: the reader would run into the next members.
    "size beyond the data": (
        "optimizer/2.npy",
        lambda d: {"size": len(d) + 10**6, "csize": len(d) + 10**6},
        "has data after its array",
    ),
    # A consistent member (its CRC-32 is that of what it holds) that holds too little.
    "size short of the data": (
        "optimizer/2.npy",
        lambda d: {"size": len(d) - 8, "csize": len(d) - 8, "crc": zlib.crc32(d[:-8])},
        "is truncated",
    ),
    "header beyond the cap": (
        "header.json",
        lambda d: {"size": 2**31, "csize": 2**31},
        "header is 2147483648 bytes long",
    ),
    "wrong CRC-32": ("variables/1.npy", lambda d: {"crc": zlib.crc32(d) ^ 1}, "Bad CRC-32"),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_members_whose_sizes_lie_are_refused(good, tmp_path, lie):
    path, members = good
    name, change, match = LIES[lie]
    path = _craft(tmp_path, members, **{name: change(dict(members)[name])})
    _refused(path, ValueError, match)


def test_a_member_cut_short_by_the_end_of_the_file_is_refused(good, tmp_path):
    # The last member's data is cut, its sizes kept, and no central directory follows.
    path, members = good
    data = _zip([{"name": n, "data": d} for n, d in members])
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(data[: len(data) - 200])
    _refused(bad, ValueError, "not a complete ZIP archive")


MEMBERS = {
    "an extra member": (
        lambda m: {"extra": [{"name": "optimizer/99.npy", "data": dict(m)["optimizer/0.npy"]}]},
        r"members that its header does not describe: \['optimizer/99.npy'\]",
    ),
    "a member outside the tree": (
        lambda m: {"extra": [{"name": "../evil", "data": b"x"}]},
        "members that its header does not describe",
    ),
    # Which of two members of one name counts depends on the reader (the last, for Python's).
    "the header twice": (
        lambda m: {"extra": [{"name": "header.json", "data": dict(m)["header.json"]}]},
        "more than one member named 'header.json'",
    ),
    "an array twice": (
        lambda m: {"extra": [{"name": "optimizer/2.npy", "data": dict(m)["optimizer/2.npy"]}]},
        "more than one member named 'optimizer/2.npy'",
    ),
    "a renamed member": (
        lambda m: {"optimizer/2.npy": {"name": "Optimizer/2.npy"}},
        "no member 'optimizer/2.npy'",
    ),
    "an encrypted member": (
        lambda m: {"optimizer/2.npy": {"flags": 1}},
        "'optimizer/2.npy' is encrypted",
    ),
}


@pytest.mark.parametrize("case", list(MEMBERS))
def test_members_other_than_those_the_header_describes_are_refused(good, tmp_path, case):
    path, members = good
    change, match = MEMBERS[case]
    path = _craft(tmp_path, members, **change(members))
    _refused(path, ValueError, match)


def test_a_member_read_is_bounded_by_the_size_the_optimizer_expects(good, tmp_path):
    # A `.npy` member that declares a header of 4 GiB (version 2): NumPy would read all of it
    # before checking; the member's size is compared with the expected array's first.
    path, members = good
    fake = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + bytes(2**20)
    path = _craft(tmp_path, members, **{"optimizer/2.npy": {"data": fake}})
    _refused(path, ValueError, "has data after its array")


def test_a_header_of_deeply_nested_json_is_refused(good, tmp_path):
    path, members = good
    path = _craft(tmp_path, members, **{"header.json": {"data": b"[" * 200_000}})
    _refused(path, ValueError, "header cannot be read")


# --- resources: what the path names -------------------------------------------------------------


def _unblock_fifo_after(path, seconds):
    """Open `path` for writing after `seconds` (and close it), so that a reader blocked on it
    returns; the tests below fail on time before this matters."""

    def unblock():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        os.close(fd)

    timer = threading.Timer(seconds, unblock)
    timer.daemon = True
    timer.start()
    return timer


def _refused_quickly(path, error, match):
    opt, params = _trained()
    snapshot = Snapshot(opt, params)
    fresh = _fresh(params)
    timer = None
    if stat.S_ISFIFO(os.lstat(path).st_mode):
        timer = _unblock_fifo_after(path, UNBLOCK_AFTER)
    try:
        start = time.perf_counter()
        with pytest.raises(error, match=match):
            OPT.Optimizer.load(path, fresh)
        with pytest.raises(error, match=match):
            opt.load_state(path)
        with pytest.raises(error, match=match):
            checkpoint.read_header(path)
        elapsed = time.perf_counter() - start
    finally:
        if timer is not None:
            timer.cancel()
    assert elapsed < QUICK_SECONDS, f"took {elapsed:.1f} s"
    snapshot.check()
    assert all(np.all(v == 0) for v in fresh.values())


@needs_fifos
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = _fifo(tmp_path)
    _refused_quickly(fifo, OSError, "must be a regular file.*FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@needs_fifos
def test_a_fifo_swapped_in_after_the_check_is_refused_on_the_descriptor(tmp_path, monkeypatch):
    # The path is checked, then opened: if it becomes a FIFO in between, the open must not wait
    # and the opened file is checked again. Simulated by making the first check see a file.
    fifo = _fifo(tmp_path)
    regular = tmp_path / "regular"
    regular.write_bytes(b"")
    real_stat = os.stat

    def stat_sees_a_file(path, *args, **kwargs):
        if os.fspath(path) == str(fifo):
            return real_stat(regular)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_sees_a_file)
    _refused_quickly(fifo, OSError, "must be a regular file.*FIFO")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_symlink_to_a_device_is_refused_unread(tmp_path, device):
    link = tmp_path / "device.ckpt"
    os.symlink(device, link)
    tracemalloc.start()
    try:
        _refused_quickly(link, OSError, "must be a regular file.*character device")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES


def test_a_directory_is_refused(tmp_path):
    directory = tmp_path / "dir.ckpt"
    directory.mkdir()
    _refused_quickly(directory, IsADirectoryError, "must be a regular file.*directory")


@needs_unix_sockets
def test_a_socket_is_refused(tmp_path, monkeypatch):
    with _bound_socket(tmp_path, monkeypatch) as path:
        _refused_quickly(path, OSError, "must be a regular file.*socket")


def test_a_symlink_to_a_checkpoint_is_followed(good, tmp_path):
    path, _ = good
    link = tmp_path / "latest.ckpt"
    os.symlink(path, link)
    opt, params = _trained()
    restored = OPT.Optimizer.load(link, _fresh(params))
    assert restored.iterations == opt.iterations


# --- validate before mutate ---------------------------------------------------------------------

BAD_RECORDS = {
    "an index past the variables": lambda h: h["exclude_from_weight_decay"][0].update(
        indices=[1, 7]
    ),
    "a record for an optimizer it does not hold": lambda h: h["exclude_from_weight_decay"].append(
        {"indices": [], "pattern": None}
    ),
    "no record": lambda h: h.update(exclude_from_weight_decay=[]),
    "repeated indices": lambda h: h["exclude_from_weight_decay"][0].update(indices=[0] * 1000),
    "indices out of order": lambda h: h["exclude_from_weight_decay"][0].update(indices=[2, 0]),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_a_bad_exclusion_record_is_refused_before_the_variables_are_written(good, tmp_path, case):
    path, members = good
    path = _craft(tmp_path, members, **_with_header(members, BAD_RECORDS[case]))
    opt, params = _trained()
    fresh = _fresh(params)
    with pytest.raises(ValueError, match="exclusion|exclude_from_weight_decay"):
        OPT.Optimizer.load(path, fresh)
    assert all(np.all(v == 0) for v in fresh.values()), "the caller's arrays were written"


def test_load_state_refuses_before_assigning_when_the_build_cannot_happen(tmp_path):
    # A checkpoint of an optimizer saved before it was built holds its learning rate; the
    # variables to build on are of a dtype no optimizer updates: nothing may be assigned.
    path = tmp_path / "unbuilt.ckpt"
    OPT.SGD(learning_rate=0.25).save(path)
    opt = OPT.SGD(learning_rate=0.5)
    snapshot = Snapshot(opt, {})
    with pytest.raises(TypeError, match="optimizers update float32 or float64"):
        opt.load_state(path, [np.ones(3, np.int32)])
    snapshot.check()
    assert opt.learning_rate == 0.5


# --- code in data: exclusion patterns -----------------------------------------------------------

CATASTROPHIC = "(.|.)*Z"


def test_a_catastrophic_pattern_from_a_file_is_refused_by_load(tmp_path):
    # `re.search("(.|.)*Z", name)` backtracks about 2**len(name) times: with this name the
    # first step after loading would run for hours.
    params = {"encoder/layer_0/attention/query/kernel": np.ones((2, 2), np.float32)}
    opt = OPT.AdamW(learning_rate=0.01, weight_decay=0.1)
    opt.build(params)
    saved = tmp_path / "long_names.ckpt"
    opt.save(saved)
    members = _members_of(saved)
    path = _craft(
        tmp_path,
        members,
        **_with_header(
            members, lambda h: h["exclude_from_weight_decay"][0].update(pattern=CATASTROPHIC)
        ),
    )
    fresh = _fresh(params)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"regular-expression syntax \('\(\.\|\.\)\*Z'\)"):
        OPT.Optimizer.load(path, fresh)
    assert time.perf_counter() - start < QUICK_SECONDS
    assert all(np.all(v == 0) for v in fresh.values()), "the caller's arrays were written"


def test_a_catastrophic_pattern_from_a_file_is_ignored_by_load_state(good, tmp_path):
    # `load_state` keeps the caller's exclusions: the step after it runs as it would have.
    path, members = good
    path = _craft(
        tmp_path,
        members,
        **_with_header(
            members, lambda h: h["exclude_from_weight_decay"][0].update(pattern=CATASTROPHIC)
        ),
    )
    opt, params = _trained()
    fresh = _adam()
    restored = _fresh(params)
    fresh.load_state(path, restored)
    start = time.perf_counter()
    fresh.apply(_grads(params, 3), restored)
    assert time.perf_counter() - start < QUICK_SECONDS
    opt.apply(_grads(params, 3), params)
    for k in params:
        np.testing.assert_array_equal(restored[k], params[k])


@pytest.mark.parametrize("pattern", ["x" * 5000, "|".join(["a"] * 3000)])
def test_a_pattern_longer_than_anyone_types_is_refused(good, tmp_path, pattern):
    path, members = good
    path = _craft(
        tmp_path,
        members,
        **_with_header(
            members, lambda h: h["exclude_from_weight_decay"][0].update(pattern=pattern)
        ),
    )
    _refused(path, ValueError, "pattern is .* characters long")


def test_literal_names_from_a_file_exclude_what_re_search_would(tmp_path):
    # A file's literal names against many variables: the load matches them once, and no
    # pattern from the file is left to run in a step.
    names = [f"layer_{i}/{kind}" for i in range(300) for kind in ("kernel", "bias")]
    params = {n: np.ones(2, np.float32) for n in names}
    opt = OPT.AdamW(learning_rate=0.01, weight_decay=0.5)
    opt.build(params)
    saved = tmp_path / "many.ckpt"
    opt.save(saved)
    members = _members_of(saved)
    literals = ["bias", "layer_7/"] + [f"nothing_{i}" for i in range(300)]
    pattern = "|".join(literals)
    assert len(pattern) <= 4096
    path = _craft(
        tmp_path,
        members,
        **_with_header(
            members, lambda h: h["exclude_from_weight_decay"][0].update(pattern=pattern)
        ),
    )
    restored = {n: np.ones(2, np.float32) for n in names}
    start = time.perf_counter()
    loaded = OPT.Optimizer.load(path, restored)
    loaded.apply({n: np.ones(2, np.float32) for n in names}, restored)
    assert time.perf_counter() - start < QUICK_SECONDS
    assert loaded._exclude_from_weight_decay_pattern is None
    for i, name in enumerate(names):
        assert loaded._use_weight_decay(i) == (re.search(pattern, name) is None), name


def test_a_regular_expression_of_a_built_optimizer_is_saved_as_what_it_excludes(tmp_path):
    # The user's own regex (not literal) is resolved by the writer, so the file loads and the
    # run continues bit for bit.
    def make():
        opt = OPT.AdamW(learning_rate=0.01, weight_decay=0.1)
        opt.exclude_from_weight_decay(var_names=["^out/.*", "dense/b.as"])
        return opt

    opt, params = _trained(make)
    path = tmp_path / "regex.ckpt"
    opt.save(path)
    record = checkpoint.read_header(path)["exclude_from_weight_decay"]
    assert record == [{"indices": [1, 2, 3], "pattern": None}]
    restored = _fresh(params)
    loaded = OPT.Optimizer.load(path, restored)
    for step in range(3, 6):
        opt.apply(_grads(params, step), params)
        loaded.apply(_grads(params, step), restored)
    for k in params:
        np.testing.assert_array_equal(restored[k], params[k], err_msg=k)


def test_a_sub_optimizer_left_unbuilt_inside_a_built_one_does_not_block_loading(tmp_path):
    # A MultiOptimizer's sub-optimizer that got no variable never builds; its regex is moot.
    unused = OPT.SGD(learning_rate=0.1, weight_decay=0.1)
    unused.exclude_from_weight_decay(var_names=[".*"])
    opt = OPT.MultiOptimizer(OPT.OptimizerMap(OPT.Adam(learning_rate=0.01), {"nothing": unused}))
    params = _params()
    opt.apply(_grads(params, 0), params)
    path = tmp_path / "multi.ckpt"
    opt.save(path)
    loaded = OPT.Optimizer.load(path, _fresh(params))
    assert loaded.iterations == 1


def test_a_regular_expression_of_an_unbuilt_optimizer_points_to_load_state(tmp_path):
    opt = OPT.AdamW(learning_rate=0.01, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["^out/"])
    path = tmp_path / "unbuilt.ckpt"
    opt.save(path)
    params = _params()
    with pytest.raises(ValueError, match="regular-expression syntax.*load_state"):
        OPT.Optimizer.load(path, params)
    # The way the message gives: the caller's exclusions, the file's state.
    again = OPT.AdamW(learning_rate=0.01, weight_decay=0.1)
    again.exclude_from_weight_decay(var_names=["^out/"])
    again.load_state(path, params)
    assert again.built and again._use_weight_decay(0) and not again._use_weight_decay(2)


def test_literal_names_of_an_unbuilt_optimizer_are_restored_as_its_pattern(tmp_path):
    opt = OPT.AdamW(learning_rate=0.01, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    path = tmp_path / "unbuilt.ckpt"
    opt.save(path)
    loaded = OPT.Optimizer.load(path)
    assert not loaded.built and loaded._exclude_from_weight_decay_pattern.pattern == "bias"
    params = _params()
    built = OPT.Optimizer.load(path, params)
    assert [built._use_weight_decay(i) for i in range(4)] == [True, False, True, False]


# --- code in data: class names ------------------------------------------------------------------


def _base_config(config):
    keys = OPT.Optimizer(learning_rate=0.1).get_config()
    return {k: v for k, v in config.items() if k in keys}


def test_the_abstract_base_class_named_in_a_file_is_refused_at_load(tmp_path):
    path = tmp_path / "sgd.ckpt"
    OPT.SGD(learning_rate=0.25).save(path)
    members = _members_of(path)

    def edit(h):
        h["class_name"] = "Optimizer"
        h["config"] = _base_config(h["config"])

    path = _craft(tmp_path, members, **_with_header(members, edit))
    for loader in (
        lambda: OPT.Optimizer.load(path),
        lambda: OPT.Optimizer.load(path, _params()),
        lambda: OPT.Optimizer.load(path, custom_objects={"Optimizer": OPT.Optimizer}),
    ):
        with pytest.raises(ValueError, match="abstract base class 'Optimizer'"):
            loader()


def test_the_abstract_base_class_inside_a_wrapper_is_refused_at_load(tmp_path):
    path = tmp_path / "lso.ckpt"
    OPT.LossScaleOptimizer(OPT.SGD(learning_rate=0.25)).save(path)
    members = _members_of(path)

    def edit(h):
        inner = h["config"]["inner_optimizer"]
        inner["class_name"] = "Optimizer"
        inner["config"] = _base_config(inner["config"])

    path = _craft(tmp_path, members, **_with_header(members, edit))
    with pytest.raises(ValueError, match="abstract base class 'Optimizer'.*inside"):
        OPT.Optimizer.load(path, _params())


@pytest.mark.parametrize("name", ["Evil", "OptimizerMap", "ExponentialDecay", "os.system"])
def test_a_class_name_that_is_no_registered_optimizer_is_refused_at_load(good, tmp_path, name):
    path, members = good
    path = _craft(tmp_path, members, **_with_header(members, lambda h: h.update(class_name=name)))
    with pytest.raises(ValueError, match="not a ferroptim optimizer"):
        OPT.Optimizer.load(path, _fresh(_params()))


# --- writing: what save replaces ----------------------------------------------------------------


def _refuses_to_replace(path, error, match):
    opt, _ = _trained()
    before = sorted(os.listdir(os.path.dirname(path)))
    start = time.perf_counter()
    with pytest.raises(error, match=match):
        opt.save(path)
    assert time.perf_counter() - start < QUICK_SECONDS
    # Nothing created beside it (no temporary file left behind).
    assert sorted(os.listdir(os.path.dirname(path))) == before


def test_save_does_not_replace_a_symlink_to_a_file_elsewhere(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.ckpt"
    target.write_bytes(b"not yours")
    here = tmp_path / "here"
    here.mkdir()
    link = here / "run.ckpt"
    os.symlink(target, link)
    _refuses_to_replace(link, OSError, "must be a new name or a regular file.*symbolic link")
    assert os.path.islink(link) and os.readlink(link) == str(target)
    assert target.read_bytes() == b"not yours"


def test_save_does_not_replace_a_symlink_to_a_device(tmp_path):
    link = tmp_path / "null.ckpt"
    os.symlink(os.devnull, link)
    _refuses_to_replace(link, OSError, "must be a new name or a regular file.*symbolic link")
    assert os.path.islink(link) and os.readlink(link) == os.devnull


@needs_fifos
def test_save_does_not_replace_a_fifo_nor_wait_on_it(tmp_path):
    fifo = _fifo(tmp_path)
    _refuses_to_replace(fifo, OSError, "must be a new name or a regular file.*FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_save_does_not_replace_a_directory(tmp_path):
    directory = tmp_path / "dir.ckpt"
    directory.mkdir()
    (directory / "inside").write_bytes(b"x")
    _refuses_to_replace(
        directory, IsADirectoryError, "must be a new name or a regular file.*directory"
    )
    assert os.listdir(directory) == ["inside"]


@needs_unix_sockets
def test_save_does_not_replace_a_socket(tmp_path, monkeypatch):
    with _bound_socket(tmp_path, monkeypatch) as path:
        _refuses_to_replace(path, OSError, "must be a new name or a regular file.*socket")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


@pytest.mark.skipif(not hasattr(os, "mknod"), reason="device nodes are POSIX-only")
def test_save_does_not_replace_a_device_node(tmp_path):
    # A node with /dev/null's numbers, made in tmp_path (the real /dev/null is left alone).
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD, which this process lacks")
    _refuses_to_replace(node, OSError, "must be a new name or a regular file.*character device")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_a_symlink_planted_while_writing_is_not_replaced(tmp_path, monkeypatch):
    # The destination is checked again just before the rename.
    opt, _ = _trained()
    path = tmp_path / "run.ckpt"
    opt.save(path)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    real = _checkpoint_file._write_array

    def plant(archive, name, value):
        if os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
            os.symlink(target, path)
        real(archive, name, value)

    monkeypatch.setattr(_checkpoint_file, "_write_array", plant)
    with pytest.raises(OSError, match="symbolic link"):
        opt.save(path)
    assert os.path.islink(path) and target.read_bytes() == b"keep"
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "run.ckpt"]


# --- writing: long names ------------------------------------------------------------------------


def _name_max(directory):
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        return 255


@pytest.mark.parametrize("char", ["a", "\u00e9", "\u6f22"])
def test_a_name_at_the_file_systems_limit_can_be_saved(tmp_path, monkeypatch, char):
    limit = _name_max(tmp_path)
    suffix = ".ckpt"
    width = len(char.encode())
    name = char * ((limit - len(suffix)) // width)
    name += "x" * (limit - len(os.fsencode(name + suffix))) + suffix
    assert len(os.fsencode(name)) == limit
    temporaries = []
    real_replace = os.replace

    def replace(src, dst):
        temporaries.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    opt, params = _trained()
    opt.save(tmp_path / name)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [name]
    assert len(temporaries) == 1 and len(os.fsencode(temporaries[0])) <= limit
    assert temporaries[0].startswith(".") and temporaries[0].endswith(".tmp")
    assert OPT.Optimizer.load(tmp_path / name, _fresh(params)).iterations == opt.iterations


def test_a_name_beyond_the_limit_fails_and_leaves_nothing(tmp_path):
    name = "a" * (_name_max(tmp_path) + 1)
    opt, _ = _trained()
    with pytest.raises(OSError) as info:
        opt.save(tmp_path / name)
    assert info.value.errno == errno.ENAMETOOLONG
    assert os.listdir(tmp_path) == []


# --- writing: a full disk -----------------------------------------------------------------------


def _saved_twice_with(tmp_path, monkeypatch, fail):
    """Save, step, then save again with `fail` installed: the second save must raise ENOSPC and
    leave the first file whole and alone in its directory."""
    opt, params = _trained()
    path = tmp_path / "run.ckpt"
    opt.save(path)
    before = path.read_bytes()
    opt.apply(_grads(params, 9), params)
    fail(monkeypatch)
    with pytest.raises(OSError) as info:
        opt.save(path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.ckpt"]
    assert OPT.Optimizer.load(path, _fresh(params)).iterations == opt.iterations - 1


def test_a_write_that_hits_a_full_disk_leaves_the_previous_file(tmp_path, monkeypatch):
    real = np.lib.format.write_array
    calls = []

    def fail(monkeypatch):
        def write_array(fp, array, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                fp.write(b"\0" * 7)  # part of it made it to the file
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fp, array, *args, **kwargs)

        monkeypatch.setattr(np.lib.format, "write_array", write_array)

    _saved_twice_with(tmp_path, monkeypatch, fail)


def test_an_fsync_that_reports_a_full_disk_leaves_the_previous_file(tmp_path, monkeypatch):
    # File systems that allocate late report ENOSPC when the data is synced.
    real = os.fsync

    def fail(monkeypatch):
        def fsync(fd):
            if stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    _saved_twice_with(tmp_path, monkeypatch, fail)


_FILL_A_SMALL_TMPFS = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import ferroptim as fo

    directory = sys.argv[1]
    path = os.path.join(directory, "run.ckpt")
    small = [np.ones(16, np.float32)]
    opt = fo.optimizers.Adam()
    opt.apply([np.ones(16, np.float32)], small)
    opt.save(path)
    before = open(path, "rb").read()
    # 4 arrays of 256 KiB (the variable, two slots, the EMA average): more than the tmpfs holds.
    big = [np.ones(2**16, np.float32)]
    opt = fo.optimizers.Adam(use_ema=True)
    opt.apply([np.ones(2**16, np.float32)], big)
    try:
        opt.save(path)
        outcome = "saved"
    except OSError as error:
        outcome = error.errno
    print(json.dumps({
        "outcome": outcome,
        "intact": open(path, "rb").read() == before,
        "files": sorted(os.listdir(directory)),
        "loads": fo.optimizers.Optimizer.load(path, [np.zeros(16, np.float32)]).iterations,
    }))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs is Linux's")
def test_a_real_full_tmpfs_leaves_the_previous_file(tmp_path):
    # A 256 KiB tmpfs in a private mount namespace (gone when the process ends), as root or
    # through a user namespace; machines that allow neither skip this one case.
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    shell = (
        'mount -t tmpfs -o size=256k tmpfs "$0" || exit 97; echo mounted >&2; '
        'exec "$1" -c "$2" "$0"'
    )
    result = None
    for unshare in (
        ["unshare", "--mount", "--propagation", "private"],
        ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"],
    ):
        try:
            attempt = subprocess.run(
                unshare
                + ["sh", "-c", shell, str(mount_point), sys.executable, _FILL_A_SMALL_TMPFS],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except FileNotFoundError:
            break
        if attempt.stderr.startswith("mounted"):
            result = attempt
            break
    if result is None:
        pytest.skip("this machine allows no private mount namespace to mount a small tmpfs in")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome == {"outcome": errno.ENOSPC, "intact": True, "files": ["run.ckpt"], "loads": 1}

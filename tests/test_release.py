"""The version is written once, in Cargo.toml: the native module, `ferroptim.__version__`, the
installed distribution's metadata and `python -m ferroptim --version` all report it."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import subprocess
import sys

import ferroptim

CARGO_TOML = pathlib.Path(__file__).resolve().parent.parent / "Cargo.toml"


def cargo_version() -> str:
    """The `version` of Cargo.toml's [package] table, read as text (tomllib is Python 3.11+)."""
    package = re.search(r"^\[package\]\n(.*?)(?=^\[)", CARGO_TOML.read_text(), re.M | re.S)
    assert package is not None, "Cargo.toml has no [package] table"
    version = re.search(r'^version = "([^"]+)"$', package.group(1), re.M)
    assert version is not None, "Cargo.toml's [package] has no version"
    return version.group(1)


def test_the_version_is_cargo_tomls():
    version = cargo_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert ferroptim.__version__ == version
    assert ferroptim._native.__version__ == version


def test_the_installed_metadata_has_the_same_version():
    # What pip and PyPI see: maturin writes it from Cargo.toml (`dynamic = ["version"]`).
    try:
        installed = importlib.metadata.version("ferroptim")
    except importlib.metadata.PackageNotFoundError:
        raise AssertionError("ferroptim is not installed: `pip install -e .` first") from None
    assert installed == cargo_version()


def test_python_m_ferroptim_version_prints_name_and_version():
    done = subprocess.run(
        [sys.executable, "-m", "ferroptim", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"ferroptim {cargo_version()}\n"
    assert done.stderr == ""

"""Command line of ferroptim: `python -m ferroptim bench [options]` (see `--help`), and
`python -m ferroptim --version`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ferroptim import __version__, _bench


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line and run the chosen command.

    Args:
        argv: the arguments, without the program name (default: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(
        prog="python -m ferroptim", description="ferroptim command-line tools."
    )
    parser.add_argument("--version", action="version", version=f"ferroptim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = commands.add_parser(
        "bench",
        help="benchmark the optimizers against NumPy, torch and a memory-bandwidth roofline",
        description=_bench.DESCRIPTION,
    )
    _bench.add_arguments(bench)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _bench.run_parsed(bench, args)


if __name__ == "__main__":
    sys.exit(main())

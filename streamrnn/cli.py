"""The ``streamrnn`` command.

Examples
--------
>>> main(["--version"])  # doctest: +ELLIPSIS
streamrnn ...
0
"""

from __future__ import annotations

import argparse

from streamrnn._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``streamrnn`` command."""
    parser = argparse.ArgumentParser(
        prog="streamrnn",
        description="Recurrent networks that live on streams: stateful RNN/LSTM/GRU, "
        "many keyed streams as one batch, online TBPTT learning.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"streamrnn {__version__}")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``streamrnn`` command.

Subcommands are plugins: each is an entry point in the group ``streamrnn.commands``
(declared in pyproject.toml) naming a ``register(subparsers)`` function that adds its
sub-parser and sets ``func`` (``args -> exit status``). The core never imports the
applications that live in :mod:`streamrnn.adapters`; they plug themselves in.

Examples
--------
>>> main(["--version"])  # doctest: +ELLIPSIS
streamrnn ...
0
"""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points

from ._version import __version__

__all__ = ["build_parser", "main"]

GROUP = "streamrnn.commands"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``streamrnn`` command, with every plugged-in subcommand."""
    parser = argparse.ArgumentParser(
        prog="streamrnn",
        description="Recurrent networks that live on streams: stateful RNN/LSTM/GRU, "
        "many keyed streams as one batch, online TBPTT learning.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"streamrnn {__version__}")
        return 0
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    return int(func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m streamrnn``: the ``streamrnn`` command line (:func:`streamrnn.cli.main`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())

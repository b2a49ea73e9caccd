"""``streamrnn serve``: the command line (private; public in ``serve``)."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys

import torch

from ._config import APPS, ServeConfig

__all__ = ["build_serve_parser", "register_serve", "serve_main"]


_DESCRIPTION = (
    "Serve live spoken-digit recognition and/or online forecasting over WebSockets, with "
    "pages to watch them (/speech, /forecast). Every connection is one stream; all "
    "streams with new data are stepped in one batched call per tick.")


def build_serve_parser(prog: str = "streamrnn serve") -> argparse.ArgumentParser:
    """The argument parser of ``streamrnn serve``."""
    return _add_arguments(argparse.ArgumentParser(prog=prog, description=_DESCRIPTION))


def _add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    d = ServeConfig()
    p.add_argument("--app", default="speech", choices=[*APPS, "all"],
                   help="the application(s) to serve; the first one's page is at / "
                   "(default speech)")
    p.add_argument("--host", default=d.host, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=d.port, help="port (default 8000; 0: any)")
    p.add_argument("--token", default=None,
                   help="require this token (?token=... or Authorization: Bearer ...)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="another browser origin allowed to connect (repeatable)")
    p.add_argument("--max-streams", type=int, default=d.max_streams,
                   help=f"most streams, connected or in grace (default {d.max_streams})")
    p.add_argument("--max-frame-bytes", type=int, default=d.max_frame_bytes,
                   help=f"largest message (default {d.max_frame_bytes})")
    p.add_argument("--max-messages-per-s", type=float, default=d.max_messages_per_s,
                   help=f"messages per second per connection (default {d.max_messages_per_s:g})")
    p.add_argument("--max-audio-rate", type=float, default=d.max_audio_rate,
                   help="audio seconds per second per connection (default "
                   f"{d.max_audio_rate:g})")
    p.add_argument("--queue-size", type=int, default=d.queue_size,
                   help=f"replies waiting per connection before it is dropped "
                   f"(default {d.queue_size})")
    p.add_argument("--idle-s", type=float, default=d.idle_s,
                   help=f"close a connection silent this long (default {d.idle_s:g}; inf)")
    p.add_argument("--grace-s", type=float, default=d.grace_s,
                   help=f"keep a dropped stream this long for a reconnect (default "
                   f"{d.grace_s:g})")
    p.add_argument("--tick-ms", type=float, default=d.tick_ms,
                   help=f"least time between batched steps (default {d.tick_ms:g})")
    return p


def serve_main(argv: list[str] | None = None) -> int:
    """Run ``streamrnn serve``; returns the exit status (0 after Ctrl-C, 2 bad usage).

    Examples
    --------
    >>> serve_main(["--port", "70000"])
    streamrnn serve: error: port must be an integer in [0, 65535], got 70000
    2
    """
    parser = build_serve_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ._app import run_server

    try:
        config = ServeConfig(
            apps=APPS if args.app == "all" else (args.app,), host=args.host, port=args.port,
            token=args.token, allow_origins=tuple(args.allow_origin),
            max_streams=args.max_streams, max_frame_bytes=args.max_frame_bytes,
            max_messages_per_s=args.max_messages_per_s, max_audio_rate=args.max_audio_rate,
            queue_size=args.queue_size, idle_s=args.idle_s if math.isfinite(args.idle_s)
            else math.inf, grace_s=args.grace_s, tick_ms=args.tick_ms,
        )
    except ValueError as exc:
        print(f"streamrnn serve: error: {exc}", file=sys.stdout)
        return 2
    torch.set_num_threads(1)  # small batched steps: extra threads only synchronise

    def started(url: str) -> None:
        pages = ", ".join(f"{url}/{name}" for name in config.apps)
        print(f"streamrnn serve: {url}/ (pages {pages}; stats {url}/stats)", flush=True)

    try:
        asyncio.run(run_server(config, started=started))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"streamrnn serve: error: {exc}", file=sys.stdout)
        return 2
    return 0


def register_serve(subparsers) -> None:
    """Plug ``streamrnn serve [--app speech|forecast|all] [--host H] [--port P]`` in.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="streamrnn").add_subparsers()
    >>> register_serve(sub)
    """
    parser = subparsers.add_parser(
        "serve", description=_DESCRIPTION,
        help="serve live digit recognition / online forecasting over WebSockets with "
        "pages (streamrnn serve [--app speech|forecast|all] [--port 8000])",
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run)

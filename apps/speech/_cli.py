"""``streamrnn listen FILE.wav``: recognise spoken digits in a WAV file as it streams (private).

Public as :func:`streamrnn.apps.speech.listen_main`.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

__all__ = ["build_listen_parser", "listen_main"]


def build_listen_parser(prog: str = "streamrnn listen") -> argparse.ArgumentParser:
    """The argument parser of ``streamrnn listen``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Recognise spoken digits (0-9) in a WAV file fed in 20 ms chunks, "
        "printing each digit as soon as it is recognised. Any sample rate works (it is "
        "resampled to the model's); several channels are mixed to mono.",
    )
    parser.add_argument("file", metavar="FILE.wav", help="the recording (integer PCM WAV)")
    parser.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per digit: {"digit": 7, "time_s": 1.23, "latency_ms": 45.0}',
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="pace the chunks as a live microphone would deliver them",
    )
    parser.add_argument(
        "--weights", default=None, help="a recogniser file (default: the shipped model)"
    )
    parser.add_argument(
        "--chunk-ms", type=float, default=20.0, help="chunk duration in ms (default 20)"
    )
    return parser


def _fail(message: str) -> int:
    print(f"streamrnn listen: error: {message}", file=sys.stderr)
    return 2


def listen_main(argv: list[str] | None = None) -> int:
    """Run ``streamrnn listen``; returns the exit status (0 ok, 2 bad input, 130 interrupted).

    Examples
    --------
    >>> import contextlib, io, json
    >>> from streamrnn.apps.speech import demo_path
    >>> with contextlib.redirect_stdout(io.StringIO()) as printed:
    ...     code = listen_main([demo_path(), "--json"])
    >>> lines = [json.loads(line) for line in printed.getvalue().splitlines()]
    >>> times = [d["time_s"] for d in lines]  # each digit once, as it is spoken
    >>> code, [d["digit"] for d in lines], times == sorted(times)
    (0, [2, 7, 5, 0, 9], True)
    >>> import pathlib  # each digit comes within 0.5 s after its word ends (the demo's json)
    >>> words = json.loads(pathlib.Path(demo_path()).with_suffix(".json").read_text())["clips"]
    >>> [0 < d["time_s"] - w["word_end_s"] < 0.5 for d, w in zip(lines, words, strict=True)]
    [True, True, True, True, True]
    >>> sorted(lines[0])
    ['digit', 'latency_ms', 'time_s']
    """
    from streamrnn.adapters.audio import WavSource

    from . import DigitRecognizer

    parser = build_listen_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        source = WavSource(args.file, chunk_ms=args.chunk_ms, realtime=args.realtime)
    except FileNotFoundError:
        return _fail(f"cannot open {args.file!r}: no such file")
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    try:
        recognizer = DigitRecognizer.load(
            args.weights, input_rate=source.sample_rate, channels="mean"
        )
    except (OSError, ValueError) as exc:
        return _fail(str(exc))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-push ops are tiny: extra threads only synchronise
    try:
        return _listen(args, source, recognizer)
    finally:
        torch.set_num_threads(threads)


def _listen(args, source, recognizer) -> int:
    digits = []

    def emit(found) -> None:
        for d in found:
            digits.append(d.digit)
            if args.json:
                print(json.dumps(d.as_dict()), flush=True)
            else:
                print(
                    f"{d.digit}   at {d.time_s:7.3f} s   (latency {d.latency_ms:5.0f} ms)",
                    flush=True,
                )

    try:
        for chunk in source:
            emit(recognizer.push(chunk, sample_rate=source.sample_rate))
        emit(recognizer.flush())
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        emit(recognizer.flush())
        return 130
    if not args.json:
        heard = " ".join(map(str, digits)) if digits else "(none)"
        print(f"digits: {heard}", flush=True)
    return 0

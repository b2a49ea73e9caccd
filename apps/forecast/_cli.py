"""``streamrnn forecast`` and ``streamrnn demo`` (private).

Public through :mod:`streamrnn.apps.forecast`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys

from ._output import duration_text, format_table
from ._run import forecast_csv

__all__ = [
    "DEMO_HORIZON",
    "add_forecast_arguments",
    "add_demo_arguments",
    "demo_main",
    "demo_path",
    "forecast_main",
    "register_demo",
    "register_forecast",
    "run_demo",
    "run_forecast",
]

DEMO_HORIZON = 6
DEMO_TARGET = "Water flow [l/s]"
_HELP_FORECAST = ("Forecast a CSV column H steps ahead with a stateful LSTM that learns "
                  "online while it forecasts (predict, then learn), combined online with the "
                  "last value and river's SNARIMAX (and a seasonal last value) by weights "
                  "learned from their errors as targets arrive; all scored on the same steps.")
_HELP_DEMO = ("Run the online forecast on river's bundled WaterFlow series (1,268 hourly "
              "readings, l/s): no download, well under a minute.")


def demo_path() -> str:
    """Path of the demo series: ``water-flow.csv`` inside the installed river package.

    Examples
    --------
    >>> import os
    >>> os.path.basename(demo_path()), open(demo_path()).readline().strip()
    ('water-flow.csv', 'Time,Water flow [l/s]')
    """
    from river import datasets

    return str(datasets.WaterFlow().path)


def _common(parser: argparse.ArgumentParser, out_default: str) -> None:
    parser.add_argument("--json", action="store_true",
                        help='print one JSON line last: {"rows", "mae", "naive_mae", '
                        '"snarimax_mae", "rnn_mae", "seasonal_mae", "season", "weights", '
                        '"plot"}')
    parser.add_argument("--out", default=out_default, metavar="DIR",
                        help=f"folder for the forecasts CSV and the PNG plot (default "
                        f"{out_default})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-snarimax", action="store_true", help="skip the SNARIMAX baseline")
    parser.add_argument("--no-combine", action="store_true",
                        help="forecast with the LSTM alone (no online combination)")
    parser.add_argument("--season", type=int, default=None, metavar="N",
                        help="grid steps in a season: adds the seasonal last value to the "
                        "combination (e.g. 24 for hourly rows; default: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights (default 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: fastest for this small model)")


def add_forecast_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``streamrnn forecast``."""
    parser.add_argument("file", metavar="FILE.csv", help="CSV file with a header row")
    parser.add_argument("--target", required=True, metavar="COL", help="column to forecast")
    parser.add_argument("--horizon", required=True, type=int, metavar="H",
                        help="forecast H grid periods ahead")
    parser.add_argument("--time-column", metavar="C", default=None,
                        help="timestamp column, ISO-8601 or epoch seconds (default: the first)")
    parser.add_argument("--inputs", nargs="+", default=[], metavar="COL",
                        help="other columns the model reads as inputs")
    parser.add_argument("--period", default=None,
                        help="grid period, e.g. 3600, 1h, 15min (default: inferred)")
    parser.add_argument("--delimiter", default=",", help="field separator (default ,)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="malformed line or non-numeric value: stop with an error "
                        "(default) or skip and count it; NaN/inf and empty cells are always "
                        "masked (NaN/inf counted)")
    parser.add_argument("--lateness", type=float, default=0.0, metavar="SECONDS",
                        help="how far back out-of-order records are still placed (default 0: "
                        "records going back in time are dropped and counted)")
    parser.add_argument("--max-gap", default=None,
                        help="silence after which rows are skipped, e.g. 2d (default: 48 "
                        "periods)")
    parser.add_argument("--score-from", default=None, metavar="TIME",
                        help="score only forecasts for times >= TIME (all are learned from)")
    parser.add_argument("--score-until", default=None, metavar="TIME",
                        help="score only forecasts for times < TIME")
    parser.add_argument("--no-calendar", action="store_true",
                        help="no hour-of-day / day-of-week inputs")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM units (default 32)")
    parser.add_argument("--k1", type=int, default=2, help="learn every k1 steps (default 2)")
    parser.add_argument("--k2", type=int, default=None,
                        help="backpropagate through k2 steps (default k1 + H + 16)")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam's learning rate (default 1e-3)")
    _common(parser, "streamrnn-forecast")
    return parser


def add_demo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``streamrnn demo``."""
    parser.add_argument("--horizon", type=int, default=DEMO_HORIZON, metavar="H",
                        help=f"hours ahead (default {DEMO_HORIZON})")
    parser.add_argument("--rows", type=int, default=None, metavar="N",
                        help="use only the first N readings (a quick check)")
    _common(parser, "streamrnn-demo")
    return parser


def register_forecast(subparsers) -> argparse.ArgumentParser:
    """Add ``streamrnn forecast`` to the ``streamrnn`` command (an entry-point plug-in).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="streamrnn")
    >>> _ = register_forecast(parser.add_subparsers())
    >>> args = parser.parse_args(["forecast", "a.csv", "--target", "OT", "--horizon", "24"])
    >>> args.func.__name__, args.file, args.target, args.horizon, args.inputs
    ('run_forecast', 'a.csv', 'OT', 24, [])
    """
    parser = subparsers.add_parser("forecast", help=_HELP_FORECAST, description=_HELP_FORECAST)
    add_forecast_arguments(parser)
    parser.set_defaults(func=run_forecast)
    return parser


def register_demo(subparsers) -> argparse.ArgumentParser:
    """Add ``streamrnn demo`` to the ``streamrnn`` command (an entry-point plug-in).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="streamrnn")
    >>> _ = register_demo(parser.add_subparsers())
    >>> args = parser.parse_args(["demo", "--json"])
    >>> args.func.__name__, args.horizon, args.json, args.out
    ('run_demo', 6, True, 'streamrnn-demo')
    """
    parser = subparsers.add_parser("demo", help=_HELP_DEMO, description=_HELP_DEMO)
    add_demo_arguments(parser)
    parser.set_defaults(func=run_demo)
    return parser


def _stem(path: str) -> str:
    base = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base) or "series"


def _execute(prog: str, args, *, path: str, target: str, title, stem: str,
             options: dict) -> int:
    import torch

    threads = torch.get_num_threads()
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        result = forecast_csv(path, target=target, horizon=args.horizon, seed=args.seed,
                              snarimax=not args.no_snarimax, combine=not args.no_combine,
                              season=args.season, progress=not args.no_progress, **options)
        if not result.scored.any():
            raise ValueError(f"{path}: no forecast could be scored: {result.rows} grid rows, "
                             f"a {args.horizon}-step forecast needs an observed value "
                             f"{args.horizon} rows after it")
        os.makedirs(args.out, exist_ok=True)
        name = f"{stem}-h{args.horizon}"
        result.to_csv(os.path.join(args.out, name + ".csv"))
        result.to_png(os.path.join(args.out, name + ".png"), title=title(result))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, csv.Error) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)  # a CLI run called in-process leaves torch as it was
    c = result.counts
    if c["late"]:
        print(f"{prog}: warning: {c['late']:,} records went back in time and were dropped "
              f"(--lateness SECONDS places records that late in order)", file=sys.stderr)
    if c["source_malformed"] or c["invalid"]:
        print(f"{prog}: warning: skipped {c['source_malformed']:,} malformed lines and "
              f"{c['invalid']:,} non-numeric values", file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print(format_table(result, title=title(result)))
    return 0


def run_forecast(args: argparse.Namespace) -> int:
    """Run ``streamrnn forecast`` from parsed arguments; the exit status (0 ok, 2 bad input)."""

    def title(result) -> str:
        return (f"streamrnn forecast: {args.target!r} of {os.path.basename(args.file)}, "
                f"{duration_text(args.horizon * result.period)} ({args.horizon} steps) ahead, "
                f"learned online while forecasting")

    options = {
        "time_column": args.time_column, "inputs": args.inputs, "period": args.period,
        "delimiter": args.delimiter, "on_error": args.on_error, "lateness": args.lateness,
        "max_gap": args.max_gap, "calendar": not args.no_calendar,
        "score_from": args.score_from, "score_until": args.score_until,
        "hidden_size": args.hidden, "k1": args.k1, "k2": args.k2, "lr": args.lr,
    }
    return _execute("streamrnn forecast", args, path=args.file, target=args.target,
                    title=title, stem=_stem(args.file), options=options)


def run_demo(args: argparse.Namespace) -> int:
    """Run ``streamrnn demo`` from parsed arguments; the exit status."""

    def title(result) -> str:
        n = "1,268" if args.rows is None else f"the first {result.counts['records']:,} of 1,268"
        return (f"streamrnn demo: river's WaterFlow ({n} hourly readings, l/s), forecast "
                f"{duration_text(args.horizon * 3600.0)} ahead by an LSTM learning online")

    options = {"time_column": "Time", "period": 3600.0, "max_records": args.rows}
    return _execute("streamrnn demo", args, path=demo_path(), target=DEMO_TARGET, title=title,
                    stem="waterflow", options=options)


def forecast_main(argv: list[str] | None = None) -> int:
    """``streamrnn forecast`` as a function: parse ``argv`` and run; the exit status.

    0 on success, 2 on bad input (a one-line message on stderr), 130 if interrupted.

    Examples
    --------
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     forecast_main([demo_path(), "--target", "flow", "--horizon", "3"])
    2
    >>> print(err.getvalue().replace(demo_path(), "FILE").replace("; ", ";\\n"), end="")
    streamrnn forecast: error: target 'flow' is not a column of FILE;
    its columns are 'Time', 'Water flow [l/s]'
    """
    parser = add_forecast_arguments(argparse.ArgumentParser(prog="streamrnn forecast",
                                                            description=_HELP_FORECAST))
    return run_forecast(parser.parse_args(argv))


def demo_main(argv: list[str] | None = None) -> int:
    """``streamrnn demo`` as a function: parse ``argv`` and run; the exit status.

    Examples
    --------
    >>> import tempfile
    >>> demo_main(["--rows", "100", "--no-progress", "--out", tempfile.mkdtemp()])
    ... # doctest: +ELLIPSIS
    streamrnn demo: river's WaterFlow (the first 100 of 1,268 hourly readings, l/s), ...
    <BLANKLINE>
    | forecaster | MAE | vs naive |
    |---|---:|---:|
    | streamrnn (combination) | 4.919 | 0.999 |
    | online LSTM alone | 4.918 | 0.999 |
    | naive (last value) | 4.923 | 1.000 |
    | river SNARIMAX(3,1,3) | 4.924 | 1.000 |
    <BLANKLINE>
    rows 100 on the 1 h grid (100 records), 94 forecasts scored, ... s to read, forecast and learn
    weights now: rnn 1.00, last 0.00, snarimax 0.00
    plot:      .../waterflow-h6.png
    forecasts: .../waterflow-h6.csv
    0
    """
    parser = add_demo_arguments(argparse.ArgumentParser(prog="streamrnn demo",
                                                        description=_HELP_DEMO))
    return run_demo(parser.parse_args(argv))

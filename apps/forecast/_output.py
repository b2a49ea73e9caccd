"""Outputs of an online forecast: the forecasts CSV, the PNG plot, the summary table (private)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math

import numpy as np

from streamrnn.utils import atomic_write, atomic_write_text

__all__ = ["duration_text", "format_table", "iso", "write_csv", "write_plot"]


def iso(t: float) -> str:
    """Epoch seconds as an ISO-8601 UTC time.

    Examples
    --------
    >>> iso(0.0), iso(1.5)
    ('1970-01-01T00:00:00Z', '1970-01-01T00:00:01.500Z')
    """
    stamp = _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)
    text = stamp.isoformat(timespec="seconds" if t == int(t) else "milliseconds")
    return text.removesuffix("+00:00") + "Z"


def duration_text(seconds: float) -> str:
    """A short human duration: ``3600.0 -> '1 h'``, ``900.0 -> '15 min'``.

    Examples
    --------
    >>> duration_text(3600.0), duration_text(900.0), duration_text(6 * 3600.0), duration_text(2.5)
    ('1 h', '15 min', '6 h', '2.5 s')
    """
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _cell(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def write_csv(result, path: str) -> None:
    """One row per forecast: ``time, actual, forecast, naive, snarimax``, written atomically.

    ``time`` is the time the forecast is for (ISO-8601 UTC); ``actual`` is empty where the
    target was not observed (or lies past the data); floats are written exactly (repr).
    """

    text = io.StringIO(newline="")
    out = csv.writer(text)
    out.writerow(["time", "actual", "forecast", "naive", "snarimax"])
    for row in zip(result.times, result.actual, result.forecast, result.naive,
                   result.snarimax, strict=True):
        out.writerow([iso(float(row[0])), *(_cell(v) for v in row[1:])])
    atomic_write_text(path, text.getvalue())


_ZOOM = 240  # forecasts in the close-up panel


def _dates(times: np.ndarray) -> np.ndarray:
    return (np.asarray(times) * 1000).astype(np.int64).astype("datetime64[ms]")


def write_plot(result, path: str, title: str | None = None) -> None:
    """Actual vs forecast (whole series and its last stretch) and the rolling MAE (PNG)."""
    from matplotlib.figure import Figure  # no pyplot: the global backend is left alone

    fig = Figure(figsize=(11, 8.5), layout="constrained")
    whole, zoom, err = fig.subplots(3, 1, height_ratios=(3, 2, 2))
    when = _dates(result.times)
    has = ~np.isnan(result.actual)
    last = slice(max(0, len(when) - _ZOOM), None)
    for ax, part in ((whole, slice(None)), (zoom, last)):
        ax.plot(when[part][has[part]], result.actual[part][has[part]], color="black", lw=1.0,
                label="actual")
        ax.plot(when[part], result.forecast[part], color="C0", lw=1.0,
                label=f"streamrnn, forecast {result.horizon} steps earlier")
        ax.plot(when[part], result.naive[part], color="0.6", lw=0.8, ls="--",
                label="naive (last value)")
        ax.set_ylabel(result.target)
    whole.legend(loc="best", fontsize=8)
    whole.set_title(title or f"{result.target}: {result.horizon}-step-ahead online forecast")
    zoom.set_title(f"the last {min(_ZOOM, len(when))} forecasts", fontsize=9)
    s = result.scored
    if s.any():
        window = min(max(24, int(s.sum()) // 50), int(s.sum()))
        series = [("streamrnn", result.forecast, "C0"), ("naive", result.naive, "0.5")]
        if result.snarimax_mae is not None:
            series.append(("SNARIMAX", result.snarimax, "C3"))
        for label, values, color in series:
            errors = np.abs(values[s] - result.actual[s])
            rolling = np.convolve(errors, np.ones(window) / window, mode="valid")
            err.plot(when[s][window - 1 :], rolling, color=color, lw=1.1,
                     label=f"{label} (MAE over all {errors.size:,}: {errors.mean():.4g})")
        err.set_ylabel(f"MAE of the last {window}")
        err.set_yscale("log")
        err.legend(loc="best", fontsize=8)
    err.set_xlabel("time forecast for (UTC)")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def format_table(result, *, title: str) -> str:
    """The human summary: MAE of each forecaster on the same steps, data counts, files."""
    rows = [("streamrnn (online LSTM)", result.mae), ("naive (last value)", result.naive_mae)]
    if result.snarimax_mae is not None:
        rows.append(("river SNARIMAX(3,1,3)", result.snarimax_mae))
    naive = result.naive_mae
    lines = [title, "", "| forecaster | MAE | vs naive |", "|---|---:|---:|"]
    for name, mae in rows:
        ratio = f"{mae / naive:.3f}" if mae is not None and naive else "-"
        lines.append(f"| {name} | {_num(mae)} | {ratio} |")
    c = result.counts
    n_scored = int(result.scored.sum())
    lines += [
        "",
        f"rows {result.rows:,} on the {duration_text(result.period)} grid "
        f"({c.get('records', 0):,} records), {n_scored:,} forecasts scored, "
        f"{result.seconds:.1f} s to read, forecast and learn",
    ]
    notes = [f"{c[k]:,} {label}" for k, label in _COUNTED if c.get(k)]
    if notes:
        lines.append("data: " + ", ".join(notes))
    if result.plot:
        lines.append(f"plot:      {result.plot}")
    if result.csv:
        lines.append(f"forecasts: {result.csv}")
    return "\n".join(lines)


_COUNTED = (
    ("source_malformed", "malformed lines skipped"),
    ("invalid", "non-numeric values (masked)"),
    ("source_blank", "blank lines"),
    ("late", "records out of order (dropped)"),
    ("reordered", "records reordered"),
    ("duplicate", "duplicate values (first kept)"),
    ("missing", "empty values (masked)"),
    ("non_finite", "NaN/inf values (masked)"),
    ("unobserved_rows", "grid rows without a new target value (held, not scored)"),
    ("out_of_range", "records with a timestamp too far from the others (dropped)"),
    ("gaps", "gaps over max_gap"),
    ("skipped_rows", "rows skipped in those gaps"),
    ("snarimax_fallback", "non-finite SNARIMAX forecasts (replaced by the last value)"),
)


def _num(v) -> str:
    return "-" if v is None else f"{v:#.4g}"

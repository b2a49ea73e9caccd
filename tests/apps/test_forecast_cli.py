"""``streamrnn demo`` / ``streamrnn forecast`` end to end, through their plug-in parsers.

The demo path runs on a short slice of the embedded WaterFlow series and must write the
PNG and the CSV and print the JSON line with exactly the documented keys; the CSV and the
JSON agree, and the three forecasters are scored on exactly the same steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import math

import numpy as np

from streamrnn.apps.forecast import (
    demo_path,
    forecast_csv,
    forecast_main,
    register_demo,
    register_forecast,
)

KEYS = {"rows", "mae", "naive_mae", "snarimax_mae", "rnn_mae", "seasonal_mae", "season",
        "weights", "plot"}
PNG = b"\x89PNG\r\n\x1a\n"


def _cli(register, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="streamrnn")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _mae(rows: list[dict], column: str) -> float:
    scored = [r for r in rows if r["actual"]]
    return sum(abs(float(r[column]) - float(r["actual"])) for r in scored) / len(scored)


def test_demo_on_a_slice_writes_png_csv_and_one_json_line(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = _cli(register_demo, ["demo", "--rows", "240", "--json", "--no-progress",
                              "--out", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert set(summary) == KEYS
    assert summary["rows"] == 241  # 240 readings and one held row in a 2 h gap
    assert summary["plot"] == str(out / "waterflow-h6.png")
    assert (out / "waterflow-h6.png").read_bytes()[:8] == PNG
    rows = _rows(out / "waterflow-h6.csv")
    assert list(rows[0]) == ["time", "actual", "forecast", "naive", "snarimax", "rnn",
                             "seasonal"]
    assert len(rows) == summary["rows"]
    assert sorted(summary["weights"]) == ["last", "rnn", "snarimax"]
    assert math.isclose(sum(summary["weights"].values()), 1.0, abs_tol=1e-3)
    for key, column in [("mae", "forecast"), ("naive_mae", "naive"),
                        ("snarimax_mae", "snarimax"), ("rnn_mae", "rnn")]:
        assert math.isclose(summary[key], _mae(rows, column), rel_tol=1e-12)


def test_demo_prints_a_table_with_the_plot_path(tmp_path, capsys):
    rc = _cli(register_demo, ["demo", "--rows", "120", "--no-progress", "--no-snarimax",
                              "--out", str(tmp_path)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| streamrnn (combination) |" in text and "| naive (last value) |" in text
    assert "| online LSTM alone |" in text
    assert "SNARIMAX" not in text
    assert f"plot:      {tmp_path / 'waterflow-h6.png'}" in text


def test_forecast_command_json_is_the_last_line(tmp_path, capsys):
    src = tmp_path / "series.csv"
    t = np.arange(200)
    with open(src, "w") as f:
        f.write("stamp,temp,load\n")
        for i in t:
            f.write(f"{1_700_000_000 + 600 * i},{20 + 3 * math.sin(i / 9):.4f},{i % 7}\n")
    rc = _cli(register_forecast, ["forecast", str(src), "--target", "temp", "--horizon", "4",
                                  "--inputs", "load", "--json", "--out", str(tmp_path / "o")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == KEYS and summary["rows"] == 200
    assert (tmp_path / "o" / "series-h4.csv").exists()
    assert summary["plot"] == str(tmp_path / "o" / "series-h4.png")


def test_all_forecasters_are_scored_on_the_same_steps(tmp_path):
    """Gaps, NaN and a late record leave unscored rows; the three MAEs share the rest."""
    src = tmp_path / "gappy.csv"
    t0, hour, h = 1_709_251_200, 3600, 3
    observed = {}  # time -> value of the records that count
    lines = ["time,y"]
    for i in range(160):
        if 50 <= i < 58:
            continue  # an 8 h gap: held rows, not scored
        if i in (70, 71):
            lines.append(f"{t0 + i * hour},{'nan' if i == 70 else 'inf'}")
            continue
        observed[t0 + i * hour] = round(10 + math.sin(i / 4) + 0.01 * i, 5)
        lines.append(f"{t0 + i * hour},{observed[t0 + i * hour]}")
    lines.insert(100, lines[95])  # a record going back in time: dropped and counted
    src.write_text("\n".join(lines) + "\n")
    result = forecast_csv(src, target="y", horizon=h)
    assert result.counts["late"] == 1 and result.counts["non_finite"] == 2
    s = result.scored
    assert set(result.times[s]) == {t for t in observed if t - h * hour >= t0}
    assert np.isnan(result.actual[~s]).all() and not np.isnan(result.snarimax[s]).any()
    for values, mae in [(result.forecast, result.mae), (result.naive, result.naive_mae),
                        (result.snarimax, result.snarimax_mae)]:
        assert mae == float(np.abs(values[s] - result.actual[s]).mean())
    for when, actual, naive in zip(result.times[s], result.actual[s], result.naive[s],
                                   strict=True):
        assert actual == observed[when]
        made = when - h * hour  # the naive forecast is the last value seen at that time
        assert naive == observed[max(t for t in observed if t <= made)]


def test_score_window_limits_scoring_not_learning(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text("t,y\n" + "".join(f"{3600 * i},{math.cos(i / 5):.5f}\n" for i in range(120)))
    full = forecast_csv(src, target="y", horizon=2, snarimax=False)
    part = forecast_csv(src, target="y", horizon=2, snarimax=False, score_from=3600 * 60,
                        score_until=3600 * 100)
    assert np.array_equal(full.forecast, part.forecast)  # the same run, scored on less
    assert part.scored.sum() == 40
    assert (part.times[part.scored] >= 3600 * 60).all()
    assert (part.times[part.scored] < 3600 * 100).all()


def test_forecast_main_is_the_command(tmp_path, capsys):
    rc = forecast_main([demo_path(), "--target", "Water flow [l/s]", "--horizon", "2",
                        "--time-column", "Time", "--period", "1h", "--no-snarimax", "--json",
                        "--no-progress", "--out", str(tmp_path)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["snarimax_mae"] is None and summary["rows"] == 1379

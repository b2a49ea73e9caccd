"""Bad input to ``streamrnn forecast``: a clear one-line error or a counted rule, no traceback.

Missing columns name the column and list those present; non-numeric fields and
malformed lines name the line; NaN / inf / empty cells, timestamps going backwards,
duplicates and gaps of days are counted by the sensor adapter's rules and reported.
"""

from __future__ import annotations

import json
import math

import pytest

from streamrnn.apps.forecast import OnlineForecaster, forecast_main, parse_duration


def _lines(n: int = 48, start: int = 0) -> list[str]:
    return [f"{1_700_000_000 + 3600 * i},{20 + math.sin(i / 3):.4f},{i % 5}"
            for i in range(start, start + n)]


def _file(tmp_path, lines, name="data.csv", header="time,temp,load"):
    path = tmp_path / name
    path.write_text("\n".join(([header] if header else []) + lines) + ("\n" if lines else ""))
    return str(path)


def _run(capsys, path, *extra, out=None):
    argv = [path, "--target", "temp", "--horizon", "2", "--no-progress", "--json",
            "--out", str(out or (path + ".out")), *extra]
    rc = forecast_main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured


def _error(capsys, path, *extra) -> str:
    rc, captured = _run(capsys, path, *extra)
    assert rc == 2 and captured.out == ""
    message = captured.err.strip()
    assert message.startswith("streamrnn forecast: error: ") and "\n" not in message
    return message


def _ok(capsys, path, *extra) -> dict:
    rc, captured = _run(capsys, path, *extra)
    assert rc == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--inputs", "lod"], "inputs 'lod' is not a column of"),
        (["--time-column", "stamp"], "time_column 'stamp' is not a column of"),
        (["--inputs", "temp"], "inputs must be distinct columns other than the target"),
    ],
)
def test_missing_or_wrong_columns_name_the_column_and_list_those_present(
    tmp_path, capsys, extra, match
):
    message = _error(capsys, _file(tmp_path, _lines()), *extra)
    assert match in message
    if "not a column" in match:
        assert "its columns are 'time', 'temp', 'load'" in message


def test_missing_target_column(tmp_path, capsys):
    path = _file(tmp_path, _lines())
    rc = forecast_main([path, "--target", "OT", "--horizon", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "target 'OT' is not a column of" in err and "'time', 'temp', 'load'" in err


def test_non_numeric_field_names_the_line_or_is_skipped_and_counted(tmp_path, capsys):
    lines = _lines()
    lines[9] = lines[9].rsplit(",", 2)[0] + ",warm,1"
    path = _file(tmp_path, lines)
    assert _error(capsys, path).endswith(":11: field 'temp' must be a number, got 'warm'")
    summary = _ok(capsys, path, "--on-error", "skip")
    assert summary["rows"] == 48


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("1700036000,1", ":12: expected 3 fields, got 2"),
        ("yesterday,1,1", ":12: column 'time' must be float seconds or an ISO-8601 time"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path, capsys, bad, match):
    lines = _lines()
    lines[10] = bad
    assert match in _error(capsys, _file(tmp_path, lines))


def test_nan_inf_and_empty_cells_are_masked_counted_and_not_scored(tmp_path, capsys):
    lines = _lines()
    for i, cell in ((10, "nan"), (11, "inf"), (12, "")):
        parts = lines[i].split(",")
        lines[i] = f"{parts[0]},{cell},{parts[2]}"
    table = forecast_main([_file(tmp_path, lines), "--target", "temp", "--horizon", "2",
                           "--no-progress", "--out", str(tmp_path / "o")])
    text = capsys.readouterr().out
    assert table == 0
    assert "2 NaN/inf values (masked)" in text  # an empty cell is simply not an observation
    assert "3 grid rows without a new target value (held, not scored)" in text
    assert "43 forecasts scored" in text  # 46 targets less the three masked ones


def test_timestamps_going_backwards_are_dropped_and_counted(tmp_path, capsys):
    lines = _lines()
    lines.insert(20, lines[5])  # back in time by 15 h
    lines.insert(30, lines[29])  # the same timestamp again: its values are duplicates
    path = _file(tmp_path, lines)
    rc, captured = _run(capsys, path)
    assert rc == 0 and json.loads(captured.out.splitlines()[-1])["rows"] == 48
    assert "warning: 1 records went back in time and were dropped" in captured.err
    forecast_main([path, "--target", "temp", "--horizon", "2", "--no-progress", "--out",
                   str(tmp_path / "o")])
    text = capsys.readouterr().out
    assert "1 records out of order (dropped)" in text
    assert "1 duplicate values (first kept)" in text  # only the target column is read


def test_a_gap_of_days_costs_bounded_rows_and_is_counted(tmp_path, capsys):
    path = _file(tmp_path, _lines(48) + _lines(48, start=48 + 24 * 5))  # 5 days silent
    summary = _ok(capsys, path)
    assert summary["rows"] == 48 + 48 + 48  # max_gap = 48 periods of held rows
    forecast_main([path, "--target", "temp", "--horizon", "2", "--no-progress", "--out",
                   str(tmp_path / "o")])
    text = capsys.readouterr().out
    assert "1 gaps over max_gap" in text and "72 rows skipped in those gaps" in text


@pytest.mark.parametrize(
    ("lines", "header", "match"),
    [
        ([], None, "is empty: expected a header row"),
        ([], "time,temp,load", "has a header but no data rows"),
        (["1700000000,20.0,1"], "time,temp,load", "cannot infer the period"),
        (["1700000000,20.0,1", "1700000000,21.0,1"], "time,temp,load",
         "cannot infer the period"),
    ],
)
def test_empty_and_too_short_files(tmp_path, capsys, lines, header, match):
    assert match in _error(capsys, _file(tmp_path, lines, header=header))


def test_fewer_rows_than_the_horizon(tmp_path, capsys):
    path = _file(tmp_path, _lines(2))
    message = _error(capsys, path, "--horizon", "5")
    assert "no forecast could be scored: 2 grid rows, a 5-step forecast needs" in message


def test_not_a_file_and_not_utf8(tmp_path, capsys):
    assert "is not a file" in _error(capsys, str(tmp_path / "nope.csv"))
    assert "is not a file" in _error(capsys, str(tmp_path))
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    assert "is not a UTF-8 text file" in _error(capsys, str(binary))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--period", "fortnight"], "period must be a positive duration"),
        (["--period", "0"], "period must be a positive duration, got '0'"),
        (["--max-gap=-1h"], "max_gap must be a positive duration"),
        (["--k1", "0"], "k1 must be a positive int, got 0"),
        (["--k1", "4", "--k2", "5"], "k2 must be >= k1 + horizon = 6"),
        (["--lr", "-1"], "lr must be a positive finite number, got -1.0"),
        (["--score-from", "soon"], "score_from must be float seconds or an ISO-8601 time"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
    ],
)
def test_bad_options_name_the_option_rule_and_value(tmp_path, capsys, extra, match):
    assert match in _error(capsys, _file(tmp_path, _lines()), *extra)


def test_bad_horizon(tmp_path, capsys):
    assert "horizon must be a positive int, got 0" in _error(
        capsys, _file(tmp_path, _lines()), "--horizon", "0")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"horizon": 0}, "horizon must be a positive int, got 0"),
        ({"horizon": 2, "cell": "lstmx"},
         r"cell must be one of 'gru' \| 'lstm' \| 'rnn', got 'lstmx'"),
        ({"horizon": 2, "loss": "hinge"}, "loss must be one of"),
        ({"horizon": 2, "num_inputs": -1}, "num_inputs must be an int >= 0, got -1"),
        ({"horizon": 2, "z_clip": math.inf}, "z_clip must be a positive finite number"),
        ({"horizon": 2, "seed": 1.5}, "seed must be an int, got 1.5"),
    ],
)
def test_forecaster_configuration_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OnlineForecaster(**kwargs)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda fc: fc.push([[1.0, 2.0]]), r"values must have shape \(T, 1\)"),
        (lambda fc: fc.push([[math.nan]]), "values must be finite"),
        (lambda fc: fc.push([[1.0]], observed=[[1]]), "observed must be a bool array"),
        (lambda fc: fc.push([[1.0], [2.0]], index=[3, 3]), "index must be strictly increasing"),
        (lambda fc: fc.push([[1.0]], extra=[[0.5]]), r"extra must be finite with shape \(1, 0\)"),
    ],
)
def test_forecaster_push_errors_change_nothing(call, match):
    fc = OnlineForecaster(2)
    with pytest.raises(ValueError, match=match):
        call(fc)
    assert fc.counts["steps"] == 0 and len(fc.learner) == 0


def test_parse_duration_errors():
    with pytest.raises(ValueError, match="period must be a positive duration"):
        parse_duration(True)
    assert parse_duration("2 d") == 172800.0

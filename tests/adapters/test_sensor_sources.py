"""Record sources for the sensor adapter: CSV (static and followed), JSON lines, TCP.

Properties: every source yields exactly the records written, however the bytes are
split in time; feeding them to an adapter record by record equals one offline pass;
malformed input raises with its line number or is skipped and counted.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time

import pytest
import torch

from streamrnn.adapters.sensor import (
    Invalid,
    SensorAdapter,
    iter_csv,
    iter_jsonl,
    iter_jsonl_socket,
)

RECORDS = [(100.0 + 0.37 * i, {"temp": 20.0 + i, "hum": 50.0 - 0.5 * i}) for i in range(40)]


def _csv_text(records=RECORDS) -> str:
    lines = ["time,temp,hum"]
    lines += [f"{t!r},{v['temp']!r},{v['hum']!r}" for t, v in records]
    return "\n".join(lines) + "\n"


def _jsonl_text(records=RECORDS) -> str:
    return "".join(
        f'{{"timestamp": {t!r}, "temp": {v["temp"]!r}, "hum": {v["hum"]!r}}}\n' for t, v in records
    )


def _offline(records):
    ad = SensorAdapter(["temp", "hum"], 0.5)
    return torch.cat([ad.push(records), ad.flush()])


def _online(source):
    ad = SensorAdapter(["temp", "hum"], 0.5)
    parts = [ad.push([record]) for record in source]
    return torch.cat([*parts, ad.flush()])


# -- CSV -------------------------------------------------------------------------------
def test_csv_file_gives_the_records_and_the_offline_tensor(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(_csv_text())
    assert list(iter_csv(path, time_column="time")) == RECORDS
    assert torch.equal(_online(iter_csv(path, time_column="time")), _offline(RECORDS))
    only = list(iter_csv(path, time_column="time", columns=["hum"]))
    assert only[0] == (RECORDS[0][0], {"hum": RECORDS[0][1]["hum"]})


def test_csv_follow_reads_a_growing_file_written_by_another_thread(tmp_path):
    path = tmp_path / "grow.csv"
    text = _csv_text()
    done = threading.Event()

    def writer():
        with open(path, "w") as f:
            for i in range(0, len(text), 23):  # pieces that split lines mid-field
                f.write(text[i : i + 23])
                f.flush()
                time.sleep(0.002)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()  # the reader may start before the file exists
    source = iter_csv(path, time_column="time", follow=True, poll=0.005, stop=done, timeout=10)
    got = _online(source)
    thread.join()
    assert torch.equal(got, _offline(RECORDS))
    assert source.counts["records"] == len(RECORDS) and source.counts["malformed"] == 0


def test_csv_follow_stops_after_an_idle_timeout_and_rereads_a_truncated_file(tmp_path):
    path = tmp_path / "idle.csv"
    path.write_text(_csv_text(RECORDS[:5]))
    assert len(list(iter_csv(path, time_column="time", follow=True, poll=0.01, timeout=0.2))) == 5

    source = iter_csv(path, time_column="time", follow=True, poll=0.01, timeout=0.5)
    first = [next(source) for _ in range(5)]
    path.write_text(_csv_text(RECORDS[:2]))  # rotated: shorter file with a header again
    assert first + list(source) == RECORDS[:5] + RECORDS[:2]
    assert source.counts["truncated"] == 1


def test_csv_non_numeric_field_is_parsed_once_and_judged_by_the_adapter(tmp_path):
    """The source yields an Invalid naming line and column; the adapter's one policy
    raises naming them, or masks and counts it once."""
    path = tmp_path / "log.csv"
    path.write_text("time,temp,hum\n1,2,3\n2,abc,4\n")
    records = list(iter_csv(path, time_column="time"))  # on_error="raise": lines only
    assert records[1] == (2.0, {"temp": Invalid("abc"), "hum": 4.0})
    for policy in ({"nan_policy": "raise"}, {"invalid_policy": "raise"}):
        ad = SensorAdapter(["temp", "hum"], 1.0, **policy)
        with pytest.raises(ValueError, match=r"log.csv:3: field 'temp' must be a number, "
                                             r"got 'abc'"):
            ad.push(iter_csv(path, time_column="time"))
        assert ad.counts["records"] == 0  # refused whole: nothing changed
    for policy in ("mask", "hold"):
        ad = SensorAdapter(["temp", "hum"], 1.0, nan_policy=policy, normalize=False,
                           mask_features=False, age_features=False)
        rows = torch.cat([ad.push(iter_csv(path, time_column="time")), ad.flush()])
        assert ad.counts["invalid"] == 1 and ad.counts["held"] == (policy == "hold")
        assert rows[-1].tolist() == [2.0, 4.0]  # masked (held): the last good temp
    masked = SensorAdapter(["temp", "hum"], 1.0, nan_policy="hold", invalid_policy="mask")
    masked.push(iter_csv(path, time_column="time"))
    assert masked.counts["invalid"] == 1 and masked.counts["held"] == 0


@pytest.mark.parametrize(
    ("text", "match", "skipped"),
    [
        ("time,temp,hum\n1,2,3\n2,3\n", r"log.csv:3: expected 3 fields, got 2", {"malformed": 1}),
        (
            "time,temp,hum\n1,2,3\nnoon,3,4\n",
            r"log.csv:3: column 'time' must be float seconds",
            {"malformed": 1},
        ),
        ("", r"log.csv is empty: expected a header row", {"malformed": 1}),
        (b"time,temp\n1,2\n2,\xff\n", r"log.csv:3: not UTF-8", {"malformed": 1}),
    ],
)
def test_csv_bad_lines_raise_with_line_number_or_are_counted(tmp_path, text, match, skipped):
    path = tmp_path / "log.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=match):
        list(iter_csv(path, time_column="time"))
    source = iter_csv(path, time_column="time", on_error="skip")
    records = list(source)
    assert all(source.counts[k] == v for k, v in skipped.items())
    assert len(records) == (0 if not text else 1)


def test_csv_missing_columns_are_named(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("time,temp\n1,2\n")
    with pytest.raises(ValueError, match=r"time_column 'when' is not in the header"):
        list(iter_csv(path, time_column="when"))
    with pytest.raises(ValueError, match=r"columns \['hum'\] are not in the header"):
        list(iter_csv(path, time_column="time", columns=["temp", "hum"]))
    with pytest.raises(FileNotFoundError):
        list(iter_csv(tmp_path / "nope.csv", time_column="time"))
    with pytest.raises(ValueError, match="poll must be a finite number > 0.0, got 0"):
        iter_csv(path, time_column="time", poll=0)
    with pytest.raises(ValueError, match="on_error must be one of 'raise' | 'skip'"):
        iter_csv(path, time_column="time", on_error="ignore")


# -- JSON lines --------------------------------------------------------------------------
def test_jsonl_from_a_text_stream_equals_the_offline_tensor():
    assert list(iter_jsonl(io.StringIO(_jsonl_text()))) == RECORDS
    assert torch.equal(_online(iter_jsonl(io.StringIO(_jsonl_text()))), _offline(RECORDS))
    nested = io.StringIO('{"ts": "1970-01-01T00:01:40Z", "v": {"temp": 1, "hum": null}}\n')
    assert list(iter_jsonl(nested, time_key="ts", values_key="v")) == [
        (100.0, {"temp": 1.0, "hum": None})
    ]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"timestamp": 1, "temp": 2', "line 2: malformed JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ('{"temp": 2}', "line 2: missing time key 'timestamp'"),
        ('{"timestamp": "later", "temp": 2}', "line 2: field 'timestamp' must be float seconds"),
    ],
)
def test_jsonl_bad_lines_raise_with_line_number_or_are_counted(line, match):
    text = '{"timestamp": 1, "temp": 1}\n' + line + '\n{"timestamp": 3, "temp": 3}\n'
    with pytest.raises(ValueError, match=match):
        list(iter_jsonl(io.StringIO(text)))
    source = iter_jsonl(io.StringIO(text), on_error="skip")
    stamps = [t for t, _ in source]
    assert stamps == [1.0, 3.0]
    assert source.counts["malformed"] == 1


@pytest.mark.parametrize(
    ("value", "match"),
    [('"hot"', "line 2: field 'temp' must be a number, got 'hot'"),
     ('{"a": 1}', "line 2: field 'temp' must be a number, got {'a': 1}")],
)
def test_jsonl_non_numeric_values_are_judged_once_by_the_adapter(value, match):
    text = ('{"timestamp": 1, "temp": 1}\n{"timestamp": 2, "temp": ' + value
            + '}\n{"timestamp": 3, "temp": 3}\n')
    records = list(iter_jsonl(io.StringIO(text)))  # lines are fine: nothing raised
    assert [t for t, _ in records] == [1.0, 2.0, 3.0]
    assert isinstance(records[1][1]["temp"], Invalid)
    with pytest.raises(ValueError, match="invalid_policy='raise': " + match):
        SensorAdapter(["temp"], 1.0, invalid_policy="raise").push(records)
    ad = SensorAdapter(["temp"], 1.0)
    ad.push(iter_jsonl(io.StringIO(text)))
    assert ad.counts["invalid"] == 1 and ad.counts["records"] == 3


# -- TCP socket ------------------------------------------------------------------------
def _serve(payload: bytes, *, hold_open: float = 0.0, piece: int = 17):
    """A one-shot JSON-lines server on 127.0.0.1 sending ``payload`` in small pieces."""
    server = socket.create_server(("127.0.0.1", 0))

    def run():
        conn, _ = server.accept()
        with conn:
            for i in range(0, len(payload), piece):
                conn.sendall(payload[i : i + piece])
                time.sleep(0.001)
            time.sleep(hold_open)
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


def test_jsonl_socket_delivers_every_record_across_split_packets():
    payload = _jsonl_text().encode() + b"{not json}\n"
    port, thread = _serve(payload)
    source = iter_jsonl_socket("127.0.0.1", port, on_error="skip")
    got = _online(source)
    thread.join(5)
    assert torch.equal(got, _offline(RECORDS))
    assert source.counts["records"] == len(RECORDS) and source.counts["malformed"] == 1


def test_jsonl_socket_stops_on_idle_timeout_or_stop_event():
    port, thread = _serve(_jsonl_text(RECORDS[:3]).encode(), hold_open=3.0)
    assert len(list(iter_jsonl_socket("127.0.0.1", port, poll=0.01, timeout=0.3))) == 3
    stop = threading.Event()
    port, thread = _serve(_jsonl_text(RECORDS[:2]).encode(), hold_open=3.0)
    source = iter_jsonl_socket("127.0.0.1", port, poll=0.01, stop=stop)
    assert next(source) == RECORDS[0]
    stop.set()
    assert list(source) == RECORDS[1:2]


def test_jsonl_socket_with_nothing_listening_raises():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        list(iter_jsonl_socket("127.0.0.1", port, connect_timeout=1.0))
    with pytest.raises(ValueError, match="port must be an int in 1..65535, got 0"):
        iter_jsonl_socket("127.0.0.1", 0)


def _open_paths() -> set:
    fds = "/proc/self/fd"
    paths = set()
    for fd in os.listdir(fds):
        try:
            paths.add(os.readlink(os.path.join(fds, fd)))
        except OSError:  # closed meanwhile
            continue
    return paths


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_sources_release_their_file_when_closed(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(_csv_text())
    with iter_csv(path, time_column="time") as source:
        next(source)
        assert str(path) in _open_paths()
    assert str(path) not in _open_paths()
    with pytest.raises(StopIteration):
        next(source)

"""Hostile sensor input: huge timestamps, over-long TCP lines, endless MQTT topics.

No wall-clock assertion: the work done is bounded by counts (rows, lines, entries), and a
hang of many seconds fails through ``signal.alarm``.
"""

from __future__ import annotations

import math
import signal
import socket
import threading

import pytest
import torch

from streamrnn.adapters.sensor import SensorAdapter, iter_csv, iter_jsonl

HUGE = [1e16, 1e24, 1e25, 1e30, 1e300, -1e300, -1e25]


@pytest.fixture
def no_hang():
    """Fail (instead of hanging CI) if the test runs for more than 20 s."""

    def fire(*_):
        raise TimeoutError("hung for 20 s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("big", HUGE)
@pytest.mark.parametrize("max_gap", [None, math.inf])
def test_a_huge_timestamp_is_dropped_and_counted_without_stepping(no_hang, big, max_gap):
    records = [(0.0, {"x": 1.0}), (1.5, {"x": 2.0}), (big, {"x": 9.0}), (3.2, {"x": 3.0})]
    ad = SensorAdapter(["x"], period=1.0, normalize=False, max_gap=max_gap)
    rows = ad.push(records)
    clean = SensorAdapter(["x"], period=1.0, normalize=False, max_gap=max_gap)
    expected = clean.push([r for r in records if r[0] != big])
    assert torch.equal(rows, expected)  # the rest of the stream is as if it never came
    assert ad.counts["out_of_range"] == 1 and ad.counts["rows"] == 4  # rows at 0, 1, 2, 3
    assert torch.equal(ad.flush(), clean.flush())


@pytest.mark.parametrize("first", [1e300, -1e300])
def test_a_huge_first_timestamp_leaves_the_adapter_empty(no_hang, first):
    ad = SensorAdapter(["x"], period=0.5)
    assert ad.push([(first, {"x": 1.0})]).shape == (0, 3)
    assert ad.flush().shape == (0, 3) and ad.counts["out_of_range"] == 1


def test_a_gap_costs_the_same_whatever_its_length(no_hang):
    """The largest gap with a grid (2**51 periods) is counted in one step, not walked."""
    for gap in (2000.0, 2.0**40, 2.0**51):
        ad = SensorAdapter(["x"], period=1.0, normalize=False)
        rows = ad.push([(0.0, {"x": 1.0}), (gap, {"x": 2.0}), (gap + 3.0, {"x": 3.0})])
        assert rows.shape[0] == 1001 + 3  # max_gap (1000 periods) past the last record, + 3
        assert ad.counts["gaps"] == 1 and ad.counts["skipped_rows"] == gap - 1001


def test_max_gap_inf_still_emits_a_bounded_number_of_rows(no_hang):
    from streamrnn.adapters.sensor._engine import MAX_GAP_ROWS

    ad = SensorAdapter(["x"], period=1.0, normalize=False, max_gap=math.inf,
                       mask_features=False, age_features=False)
    far = 2.0**50  # a valid timestamp, 2**50 periods ahead
    rows = ad.push([(0.0, {"x": 1.0}), (far, {"x": 2.0}), (far + 2.0, {"x": 3.0})])
    assert rows.shape[0] == MAX_GAP_ROWS + 1 + 2  # k = 0..2**20 held, then the 2 rows
    assert ad.counts["gaps"] == 1 and ad.counts["skipped_rows"] == far - MAX_GAP_ROWS - 1
    short = SensorAdapter(["x"], period=1.0, normalize=False, max_gap=math.inf)
    assert short.push([(0.0, {"x": 1.0}), (5000.5, {"x": 2.0})]).shape[0] == 5001  # all


def test_an_origin_or_lateness_without_a_grid_is_refused_and_a_huge_max_gap_is_none():
    with pytest.raises(ValueError, match="origin must be within 2\\*\\*52 periods"):
        SensorAdapter(["x"], period=1e-9, origin=1.7e9)
    with pytest.raises(ValueError, match="lateness must be within 2\\*\\*52 periods"):
        SensorAdapter(["x"], period=1e-9, lateness=1e300)
    huge, none = (SensorAdapter(["x"], period=1e-3, max_gap=g, normalize=False)
                  for g in (1e300, math.inf))
    records = [(0.0, {"x": 1.0}), (0.01, {"x": 2.0})]
    assert torch.equal(huge.push(records), none.push(records))


def test_a_state_dict_without_the_new_count_still_loads():
    ad = SensorAdapter(["x"], period=1.0)
    ad.push([(0.0, {"x": 1.0}), (2.5, {"x": 2.0})])
    state = ad.state_dict()
    del state["counts"]["out_of_range"]  # as written before the count existed
    twin = SensorAdapter(["x"], period=1.0)
    twin.load_state_dict(state)
    more = [(4.0, {"x": 3.0})]
    assert torch.equal(twin.push(more), ad.push(more)) and twin.counts["out_of_range"] == 0


@pytest.mark.parametrize("big", ["1e300", "-1e300", "1e25"])
def test_csv_and_jsonl_rows_with_huge_timestamps(no_hang, tmp_path, big):
    path = tmp_path / "log.csv"
    path.write_text(f"t,x\n0,1\n1,2\n{big},3\n2,4\n")
    ad = SensorAdapter(["x"], period=1.0, normalize=False, age_features=False)
    rows = ad.push(iter_csv(path, time_column="t"))
    assert rows[:, 0].tolist() == [1.0, 2.0] and ad.counts["out_of_range"] == 1
    lines = [f'{{"timestamp": {t}, "x": {v}}}\n' for t, v in ((0, 1), (1, 2), (big, 3), (2, 4))]
    ad = SensorAdapter(["x"], period=1.0, normalize=False, age_features=False)
    assert torch.equal(ad.push(iter_jsonl(lines)), rows)


def test_forecast_on_a_csv_with_a_huge_timestamp_returns_with_a_count(no_hang, tmp_path):
    from streamrnn.apps.forecast import forecast_csv

    rows = [f"{3600 * i},{20 + math.sin(i / 4):.4f}" for i in range(80)]
    rows.insert(40, "1e300,99")
    path = tmp_path / "room.csv"
    path.write_text("time,temp\n" + "\n".join(rows) + "\n")
    result = forecast_csv(path, target="temp", horizon=2, snarimax=False, progress=False,
                          period="1h")
    assert result.counts["out_of_range"] == 1 and result.rows == 80


# -- TCP JSON lines: a line-length cap --------------------------------------------------
def _serve_once(payload: bytes):
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.sendall(payload)
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


def test_over_long_tcp_lines_are_dropped_and_counted(no_hang):
    from streamrnn.adapters.sensor import iter_jsonl_socket

    huge = b"x" * (8 << 20)  # 8 MiB without a newline, then a good line
    payload = (b'{"timestamp": 1, "x": 1}\n' + huge + b'\n{"timestamp": 2, "x": 2}\n'
               + b"y" * 300)  # and an over-long unterminated tail
    port, thread = _serve_once(payload)
    source = iter_jsonl_socket("127.0.0.1", port, max_line=256, on_error="skip")
    assert list(source) == [(1.0, {"x": 1.0}), (2.0, {"x": 2.0})]
    thread.join(10)
    assert source.counts["too_long"] == 2 and source.counts["malformed"] == 0
    assert source.counts["lines"] == 3  # the tail never became a line


def test_line_splitting_holds_at_most_max_line_bytes_and_reads_each_byte_once():
    from streamrnn.adapters.sensor.sources._base import split_lines

    class Chunk(bytes):  # counts how much of each chunk find() scans
        scanned = 0

        def find(self, sub, start=0):
            at = bytes.find(self, sub, start)
            Chunk.scanned += (len(self) if at < 0 else at + 1) - start
            return at

    data = [Chunk(b"a" * 1000) for _ in range(2000)] + [Chunk(b"\nok\n")]
    counts = {"lines": 0, "too_long": 0}
    assert list(split_lines(iter(data), 4096, counts)) == [(2, b"ok")]
    assert counts == {"lines": 2, "too_long": 1}
    assert Chunk.scanned == 2000 * 1000 + 4  # linear, not quadratic
    for size in (1, 7, 64):  # any chunking gives the same lines
        text = b'{"a": 1}\n' + b"z" * 50 + b"\n\n{\"b\": 2}\nlast"
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        counts = {"lines": 0, "too_long": 0}
        got = list(split_lines(iter(pieces), 20, counts))
        assert got == [(1, b'{"a": 1}'), (3, b""), (4, b'{"b": 2}'), (5, b"last")]
        assert counts == {"lines": 5, "too_long": 1}


def test_max_line_is_validated():
    from streamrnn.adapters.sensor import iter_jsonl_socket

    with pytest.raises(ValueError, match="max_line must be a positive int, got 0"):
        iter_jsonl_socket("127.0.0.1", 9, max_line=0)


# -- MQTT: a bounded duplicate table -----------------------------------------------------
class _Message:
    def __init__(self, topic: str, t: float) -> None:
        self.topic = topic
        self.payload = f'{{"timestamp": {t}, "x": 1}}'.encode()


def test_mqtt_dedup_remembers_a_bounded_number_of_topics_least_recent_first():
    from streamrnn.adapters.sensor import MQTTSource

    src = MQTTSource("127.0.0.1", 1883, "s/#", dedup_topics=100, max_queue=10**6)
    src._on_message(None, None, _Message("hot", 1.0))
    for i in range(10_000):
        src._on_message(None, None, _Message(f"t{i}", 1.0))
        if i % 50 == 0:
            src._on_message(None, None, _Message("hot", 1.0))  # a redelivery: dropped
    assert len(src._seen) == 100 and src.counts["topics_forgotten"] == 10_001 - 100
    assert "hot" in src._seen  # recently seen: kept
    assert src.counts["duplicate"] == 200
    src._on_message(None, None, _Message("t0", 1.0))  # forgotten: not known as duplicate
    assert src.counts["duplicate"] == 200 and src._queue.qsize() == 10_002
    with pytest.raises(ValueError, match="dedup_topics must be a positive int"):
        MQTTSource("127.0.0.1", 1883, "s/#", dedup_topics=0)

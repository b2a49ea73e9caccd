"""MQTT against a real mosquitto broker on 127.0.0.1: many topics, a broker restart.

Properties: every record published on many sensor topics reaches its topic's adapter,
and the resulting tensors stepped through a StreamBank keyed by topic equal one
offline pass per topic; a broker restart mid-stream loses nothing (QoS 1, persistent
sessions, broker persistence) and redeliveries / re-sends are dropped by timestamp.

Skipped when the ``mosquitto`` binary is absent (CI installs it: apt-get install -y
mosquitto).
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from streamrnn.adapters.sensor import Invalid, MQTTSource, SensorAdapter

mqtt = pytest.importorskip("paho.mqtt.client", reason='MQTT tests need "paho-mqtt>=2"')
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto broker binary not found (apt-get install -y mosquitto)"
)

CHANNELS = ["temp", "hum"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Broker:
    """A mosquitto subprocess bound to 127.0.0.1:port, restartable on the same port."""

    def __init__(self, directory: Path, *, persistence: bool) -> None:
        self.port = _free_port()
        self.directory = directory
        self.config = directory / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {directory}/",
            f"user {getpass.getuser()}",  # as root: do not drop to 'mosquitto'
            "log_dest stderr",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.log = open(directory / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=self.log, stderr=self.log
        )
        _wait(self._listening, 10.0, f"mosquitto on port {self.port}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            log = (self.directory / "mosquitto.log").read_text(errors="replace")
            raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{log}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path, persistence=False)
    b.start()
    yield b
    b.close()


@pytest.fixture
def persistent_broker(tmp_path):
    b = Broker(tmp_path, persistence=True)
    b.start()
    yield b
    b.close()


class Publisher:
    """A paho QoS 1 publisher that queues while the broker is away and re-sends."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_publish = self._on_publish
        self.client.connect(host="127.0.0.1", port=port)
        self.client.loop_start()
        self.mids: list[int] = []
        self.acked: set[int] = set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acked.add(mid)

    def send(self, topic: str, t: float, values: dict) -> None:
        payload = json.dumps({"timestamp": t, **values})
        # While the broker is away publish() reports "not connected" but keeps the QoS 1
        # message queued; paho sends it after reconnecting.
        self.mids.append(self.client.publish(topic, payload, qos=1).mid)

    def wait_sent(self, timeout: float = 10.0) -> None:
        _wait(lambda: self.acked.issuperset(self.mids), timeout, "PUBACKs")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _record(topic_index: int, i: int):
    return float(i) * 0.5, {"temp": 20.0 + topic_index + 0.1 * i, "hum": 40.0 + (i % 7)}


def _collect(source: MQTTSource, expected: int, timeout: float) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        got += source.drain(timeout=0.1)
    return got


def _offline_rows(records) -> torch.Tensor:
    ad = SensorAdapter(CHANNELS, 0.5, lateness=100.0)
    return torch.cat([ad.push(sorted(records, key=lambda r: r[0])), ad.flush()])


def test_many_topics_feed_adapters_and_a_stream_bank(broker):
    streamrnn = pytest.importorskip("streamrnn")
    topics = [f"sensors/dev{k}" for k in range(12)]
    per_topic = 30
    with MQTTSource("127.0.0.1", broker.port, ["sensors/#"], qos=1, timeout=5.0) as source:
        pub = Publisher(broker.port, "pub-many")
        for i in range(per_topic):
            for k, topic in enumerate(topics):
                pub.send(topic, *_record(k, i))
        pub.wait_sent()

        model = streamrnn.LSTM(SensorAdapter(CHANNELS, 0.5).num_features, 8, seed=0)
        bank = streamrnn.StreamBank(model, max_streams=64)
        adapters = {t: SensorAdapter(CHANNELS, 0.5, lateness=100.0) for t in topics}
        rows = {t: [] for t in topics}
        outputs = {t: [] for t in topics}
        seen = 0
        while seen < per_topic * len(topics):
            batch = source.drain(timeout=2.0)
            assert batch, f"only {seen} of {per_topic * len(topics)} records arrived"
            seen += len(batch)
            by_topic: dict = {}
            for topic, t, values in batch:
                by_topic.setdefault(topic, []).append((t, values))
            chunks = {t: adapters[t].push(recs) for t, recs in by_topic.items()}
            chunks = {t: c for t, c in chunks.items() if c.shape[0]}
            for t, out in (bank.push(chunks) if chunks else {}).items():
                rows[t].append(chunks[t])
                outputs[t].append(out)
        pub.close()

    tails = {t: ad.flush() for t, ad in adapters.items()}
    tails = {t: c for t, c in tails.items() if c.shape[0]}
    for t, out in bank.push(tails).items():
        rows[t].append(tails[t])
        outputs[t].append(out)
    assert source.counts["duplicate"] == 0 and source.counts["malformed"] == 0
    expected = {
        t: _offline_rows([_record(k, i) for i in range(per_topic)]) for k, t in enumerate(topics)
    }
    whole = streamrnn.StreamBank(model, max_streams=64).push(expected)  # one pass per topic
    for t in topics:
        assert torch.equal(torch.cat(rows[t]), expected[t])
        torch.testing.assert_close(torch.cat(outputs[t]), whole[t], rtol=1e-5, atol=1e-5)


def test_a_broker_restart_loses_nothing_and_drops_duplicates(persistent_broker):
    topics = ["plant/a", "plant/b", "plant/c"]
    n1, n2, n3 = 20, 15, 10
    source = MQTTSource(
        "127.0.0.1",
        persistent_broker.port,
        ["plant/+"],
        qos=1,
        client_id="sub-restart",
        persistent=True,
        reconnect_min=0.05,
        reconnect_max=0.5,
    )
    with source:
        pub = Publisher(persistent_broker.port, "pub-restart")
        sent = {t: [] for t in topics}

        def publish(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                for k, topic in enumerate(topics):
                    pub.send(topic, *_record(k, i))
                    sent[topic].append(_record(k, i))

        publish(0, n1)
        pub.wait_sent()
        got = _collect(source, n1 * len(topics), 10.0)

        persistent_broker.stop()
        _wait(lambda: not source.connected, 10.0, "the subscriber to notice")
        publish(n1, n1 + n2)  # queued by the publisher while the broker is away
        persistent_broker.start()
        _wait(lambda: source.connected, 10.0, "the subscriber to reconnect")
        publish(n1 + n2, n1 + n2 + n3)
        for k, topic in enumerate(topics):  # a publisher re-sending after an outage
            for i in range(n1 - 3, n1):
                pub.send(topic, *_record(k, i))
        pub.wait_sent()
        got += _collect(source, (n1 + n2 + n3) * len(topics) - len(got), 15.0)
        time.sleep(0.2)
        got += source.drain()
        pub.close()

    assert source.counts["connects"] >= 2 and source.counts["disconnects"] >= 1
    assert source.counts["duplicate"] >= 3 * len(topics)
    for topic in topics:
        stamps = [t for tp, t, _ in got if tp == topic]
        assert sorted(stamps) == [r[0] for r in sent[topic]], topic  # none lost, none twice
        records = [(t, v) for tp, t, v in got if tp == topic]
        assert torch.equal(_offline_rows(records), _offline_rows(sent[topic]))


def test_no_broker_is_a_clear_connection_error():
    source = MQTTSource("127.0.0.1", _free_port(), "x/#", connect_timeout=0.5)
    with pytest.raises(ConnectionError, match=r"no MQTT broker answered at 127.0.0.1:\d+"):
        source.start()
    assert not source.connected


def test_malformed_payloads_are_counted_or_raised(broker):
    with MQTTSource("127.0.0.1", broker.port, "bad/#", on_error="skip") as source:
        pub = Publisher(broker.port, "pub-bad")
        pub.client.publish("bad/x", b"\xff\xfe", qos=1)
        pub.client.publish("bad/x", b'{"timestamp": 1, "temp": "hot", "hum": 2}', qos=1)
        pub.client.publish("bad/x", b"[1, 2]", qos=1)
        pub.send("bad/x", 2.0, {"temp": 1.0})
        got = _collect(source, 2, 5.0)
        pub.close()
    assert [t for _, t, _ in got] == [1.0, 2.0]
    assert got[0][2] == {"temp": Invalid("hot"), "hum": 2.0}  # parsed once, judged later
    assert source.counts["malformed"] == 2
    ad = SensorAdapter(["temp", "hum"], 1.0, invalid_policy="mask")
    ad.push([(t, v) for _, t, v in got])
    assert ad.counts["invalid"] == 1
    with MQTTSource("127.0.0.1", broker.port, "bad/#", on_error="raise") as source:
        pub = Publisher(broker.port, "pub-bad2")
        pub.client.publish("bad/y", b"{broken", qos=1)
        with pytest.raises(ValueError, match=r"topic 'bad/y': malformed JSON"):
            _collect(source, 1, 5.0)
        pub.close()

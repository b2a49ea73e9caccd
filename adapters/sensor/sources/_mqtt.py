"""MQTTSource: sensor records from MQTT topics via paho-mqtt >= 2 (private).

paho is imported when the source starts, so the rest of the sensor adapter works
without it (``pip install "streamrnn[mqtt]"``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque

from streamrnn.utils import check_bool, check_number, check_positive_int

from .._parse import parse_json_record
from ._base import Source, check_keys, stopped

__all__ = ["MQTTSource"]

class MQTTSource(Source):
    """Records ``(topic, timestamp, {channel: value})`` from MQTT topics.

    A paho-mqtt (>= 2) client runs its network loop in a background thread
    (``loop_start``) and reconnects by itself when the broker goes away, waiting
    ``reconnect_min`` doubling up to ``reconnect_max`` seconds (``reconnect_delay_set``);
    it re-subscribes on every connection. Payloads are JSON objects as in
    :func:`iter_jsonl`. A message whose timestamp was already delivered on the same
    topic (a QoS 1 redelivery, a publisher re-sending after an outage) is dropped and
    counted as ``duplicate``.

    For no loss across a broker restart use ``qos=1`` and ``persistent=True`` with a
    fixed ``client_id`` (the broker keeps the subscription and queues messages while
    this client is away; the broker itself needs persistence to keep them across its
    own restart), or have publishers re-send: duplicates are dropped either way.

    Parameters
    ----------
    host, port : str, int
        The broker.
    topics : str or list of str
        Topic filters to subscribe to (wildcards allowed).
    qos : {0, 1, 2}
        Subscription QoS.
    client_id : str or None
        MQTT client id (``None``: the broker assigns one).
    persistent : bool
        Ask for a persistent session (``clean_session=False``); needs ``client_id``.
    keepalive : int
        Seconds between keepalive pings.
    reconnect_min, reconnect_max : float
        Reconnect back-off bounds in seconds.
    connect_timeout : float
        :meth:`start` raises ``ConnectionError`` if no broker answers within it.
    time_key, values_key, on_error
        Payload layout and policy as in :func:`iter_jsonl`; with ``"raise"`` the error
        is raised in the thread iterating the source.
    dedup_window : int
        Timestamps remembered per topic for duplicate detection.
    dedup_topics : int
        Topics remembered for duplicate detection (least recently seen forgotten first,
        counted in ``topics_forgotten``): memory stays bounded under endless new topics.
        A redelivery on a forgotten topic is not recognised as a duplicate.
    max_queue : int
        Records buffered between the network thread and the reader; when full the
        network thread waits (back-pressure to the broker).
    poll : float
        Seconds between checks of ``stop`` / ``timeout`` while iterating.
    timeout : float or None
        Iteration ends after this many seconds without a record (``None``: never).
    stop : threading.Event or callable or None
        Iteration ends once it is set and the buffer is empty.

    Attributes
    ----------
    counts : dict
        ``messages`` received, ``records`` delivered, ``duplicate``, ``malformed``,
        ``connects``, ``refused`` (connections or subscriptions the
        broker refused), ``disconnects``, ``topics_forgotten`` (see ``dedup_topics``).

    Threads
    -------
    An iterator: iterate it from one thread at a time (not locked).

    Examples
    --------
    >>> from streamrnn.adapters.sensor import MQTTSource
    >>> src = MQTTSource("127.0.0.1", 1883, ["sensors/#"], qos=1, client_id="demo",
    ...                  persistent=True)
    >>> src.topics, src.connected
    (['sensors/#'], False)

    With a broker running: ``with src: for topic, t, values in src: ...``.
    """

    COUNTS = ("messages", "records", "duplicate", "malformed", "connects", "refused",
              "disconnects", "topics_forgotten")

    def __init__(
        self,
        host: str,
        port: int,
        topics,
        *,
        qos: int = 1,
        client_id: str | None = None,
        persistent: bool = False,
        keepalive: int = 30,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        connect_timeout: float = 10.0,
        time_key: str = "timestamp",
        values_key: str | None = None,
        on_error: str = "skip",
        dedup_window: int = 4096,
        dedup_topics: int = 10_000,
        max_queue: int = 100_000,
        poll: float = 0.1,
        timeout: float | None = None,
        stop=None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty str, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an int in 1..65535, got {port!r}")
        topics = [topics] if isinstance(topics, str) else list(topics)
        if not topics or not all(isinstance(t, str) and t for t in topics):
            raise ValueError(f"topics must be one or more non-empty topic filters, got {topics!r}")
        if qos not in (0, 1, 2) or isinstance(qos, bool):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        if client_id is not None and not isinstance(client_id, str):
            raise ValueError(f"client_id must be a str or None, got {client_id!r}")
        check_bool("persistent", persistent)
        if persistent and not client_id:
            raise ValueError("persistent=True needs a client_id, got None")
        for name, value in (
            ("keepalive", keepalive),
            ("dedup_window", dedup_window),
            ("dedup_topics", dedup_topics),
            ("max_queue", max_queue),
        ):
            check_positive_int(name, value)
        check_number("reconnect_min", reconnect_min, low=0.0, low_open=True)
        check_number("reconnect_max", reconnect_max, low=reconnect_min)
        check_number("connect_timeout", connect_timeout, low=0.0, low_open=True)
        check_number("poll", poll, low=0.0, low_open=True)
        if timeout is not None:
            check_number("timeout", timeout, low=0.0)
        if stop is not None and not (callable(stop) or callable(getattr(stop, "is_set", None))):
            raise ValueError(f"stop must be a threading.Event or a callable, got {stop!r}")
        check_keys(time_key, values_key)
        super().__init__(on_error=on_error)
        self.host, self.port, self.topics, self.qos = host, port, topics, qos
        self.client_id, self.persistent, self.keepalive = client_id, persistent, keepalive
        self.reconnect_min, self.reconnect_max = reconnect_min, reconnect_max
        self.connect_timeout = connect_timeout
        self.time_key, self.values_key = time_key, values_key
        self.dedup_window, self.dedup_topics = dedup_window, dedup_topics
        self.max_queue = max_queue
        self.poll, self.timeout, self.stop = poll, timeout, stop
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._seen: OrderedDict = OrderedDict()  # topic -> (stamps, order), LRU first
        self._seen_lock = threading.Lock()
        self._connected = threading.Event()  # connected and subscribed (SUBACK seen)
        self._sub_mid: int | None = None
        self._refused: list = []
        self._held: ValueError | None = None
        self._client = None

    @property
    def connected(self) -> bool:
        """Whether the client is connected and its subscriptions are acknowledged."""
        return self._connected.is_set()

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> MQTTSource:
        """Connect and subscribe (idempotent).

        Returns once the broker has acknowledged the subscriptions, so nothing published
        afterwards is missed; ``ConnectionError`` if no broker answers in time or it
        refuses a subscription.
        """
        if self._client is not None:
            return self
        try:
            import paho.mqtt.client as mqtt
        except ImportError as err:
            raise ImportError(
                'MQTTSource needs paho-mqtt >= 2: pip install "paho-mqtt>=2"'
            ) from err
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id or "",
            clean_session=not self.persistent,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(self.reconnect_min, self.reconnect_max)
        client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self._client = client
        client.loop_start()
        if not self._connected.wait(self.connect_timeout) or self._refused:
            self.close()
            if self._refused:
                raise ConnectionError(
                    f"the MQTT broker at {self.host}:{self.port} refused the subscription "
                    f"to {self.topics} (reason codes {self._refused})"
                )
            raise ConnectionError(
                f"no MQTT broker answered at {self.host}:{self.port} within "
                f"connect_timeout={self.connect_timeout}s"
            )
        return self

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
            self._connected.clear()

    def __enter__(self) -> MQTTSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------
    def __iter__(self):
        self.start()
        idle_since = time.monotonic()
        while True:
            if self._held is not None:
                item, self._held = self._held, None
                raise item
            try:
                item = self._queue.get(timeout=self.poll)
            except queue.Empty:
                if stopped(self.stop) or (
                    self.timeout is not None and time.monotonic() - idle_since >= self.timeout
                ):
                    return
                continue
            idle_since = time.monotonic()
            yield self._deliver(item)

    def drain(self, timeout: float = 0.0) -> list:
        """Every buffered record now, waiting up to ``timeout`` seconds for the first.

        Call after :meth:`start` (or inside ``with``); iteration starts by itself.

        With ``on_error="raise"`` a bad payload raises here, after the records before
        it have been returned by an earlier call.
        """
        out = []
        if self._held is not None:
            item, self._held = self._held, None
            raise item
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            while True:
                if isinstance(item, ValueError) and out:
                    self._held = item  # raised by the next call
                    return out
                out.append(self._deliver(item))
                item = self._queue.get_nowait()
        except queue.Empty:
            return out

    def _deliver(self, item):
        if isinstance(item, ValueError):
            raise item
        self.counts["records"] += 1
        return item

    # -- paho callbacks (network thread) -------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counts["refused"] += 1  # paho retries with back-off
            return
        self.counts["connects"] += 1
        _, self._sub_mid = client.subscribe([(topic, self.qos) for topic in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._sub_mid:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            self._refused = refused
            self.counts["refused"] += 1
        self._connected.set()  # start() reports a refusal

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.counts["disconnects"] += 1
        self._connected.clear()

    def _on_message(self, client, userdata, message) -> None:
        self.counts["messages"] += 1
        topic = message.topic
        where = f"topic {topic!r}"
        try:
            text = message.payload.decode("utf-8")
            ts, raw = parse_json_record(text, time_key=self.time_key, values_key=self.values_key)
            values = self.values(raw, where)
        except (UnicodeDecodeError, ValueError) as err:
            if self.on_error == "raise":
                self._queue.put(ValueError(f"{where}: {err}"))
            else:
                self.counts["malformed"] += 1
            return
        with self._seen_lock:  # paho calls back on one thread; the lock keeps it so
            seen = self._seen.get(topic)
            if seen is None:
                seen = self._seen[topic] = (set(), deque())
                if len(self._seen) > self.dedup_topics:  # forget the least recent topic
                    self._seen.popitem(last=False)
                    self.counts["topics_forgotten"] += 1
            else:
                self._seen.move_to_end(topic)
        stamps, order = seen
        if ts in stamps:
            self.counts["duplicate"] += 1
            return
        stamps.add(ts)
        order.append(ts)
        if len(order) > self.dedup_window:
            stamps.discard(order.popleft())
        self._queue.put((topic, ts, values))

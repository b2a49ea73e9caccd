"""Timestamped sensor records -> fixed-rate, masked, normalised tensors.

Records ``(timestamp, {channel: value})`` come from iterables, CSV files (optionally
followed while they grow), JSON lines (a text stream or a TCP socket) or MQTT topics;
:class:`SensorAdapter` turns them into rows on a fixed grid, chunk-invariantly: pushing
the same records in any grouping gives the same tensors, bit for bit.

Rules
-----
Grid
    Rows are at ``origin + k * period`` (UTC epoch seconds), from the first grid time at
    or after the first record. A row is emitted once time (the newest timestamp minus
    ``lateness``) has passed it, or by :meth:`SensorAdapter.flush`.
Values
    ``"hold"``: the channel's last observation at or before the row. ``"linear"``: the
    line between that observation and the next one (the row waits for it, at most
    ``interp_limit`` seconds; past that it is held). Before a channel's first
    observation its value is 0.
Mask and age
    ``c:mask`` is 1 when channel ``c`` was observed within the last period (age < 1);
    ``c:age`` is the time since its last observation, in periods (since the stream's
    first record if it has never reported). Gaps and late starters are visible in both.
Channels
    Fixed, as declared: values of undeclared channels are counted (``unknown_channel``)
    and ignored; a declared channel that starts late or stops is handled by the fill,
    mask and age rules above, so the column layout never changes.
Bad values
    ``None`` (missing), NaN / inf and non-numeric strings follow ``nan_policy``:
    ``"raise"`` (``ValueError`` before anything changes), ``"mask"`` (dropped, as if not
    reported), ``"hold"`` (the last good value repeated as an observation); non-numeric
    ones follow ``invalid_policy`` instead when it is set. Counted as ``missing`` /
    ``non_finite`` / ``invalid``; repairs as ``held``. A value is parsed once, by the
    source that read it or by ``push`` (a source yields a float, ``None`` or an
    :class:`Invalid`), and judged and counted once, here: sources judge only the shape
    of their lines.
Order and duplicates
    A record older than the newest timestamp by at most ``lateness`` seconds is put in
    its place (``reordered``); an older one is dropped (``late``). A value for a channel
    that already has one at the same timestamp is dropped (``duplicate``, first wins).
    Records at the same timestamp with different channels merge.
Gaps
    A silence longer than ``max_gap`` seconds emits rows up to ``max_gap`` past the last
    record, skips the rest (``gaps``, ``skipped_rows``) and resumes at the next record, so
    a gap of days costs a bounded number of rows. ``(t, {})`` is a heartbeat: it moves
    time forward without observing anything. The cost of a gap does not depend on its
    length (it is counted, never stepped through). A timestamp with
    ``|t| > 2**52 * period`` (e.g. ``1e300``) has no grid: the record is dropped and
    counted (``out_of_range``).
Normalisation
    With ``normalize=True`` each value column is ``(x - mean) / sqrt(var + eps)`` under
    the channel's running statistics after every observation at or before the row:
    Welford by default, exponentially weighted with ``ema=alpha``; :meth:`freeze` stops
    the updates. The statistics are a :class:`streamrnn.utils.RunningMoments` (plain
    floats updated in time order), so they are chunk-invariant and serialise exactly.
Calendar
    ``calendar=True`` appends ``hour_sin, hour_cos, dow_sin, dow_cos``: the phase of the
    day and of the week (Monday 00:00 = 0), at UTC + ``utc_offset``.

Sources
-------
:func:`iter_csv` (a file, or ``follow=True`` for one still being written),
:func:`iter_jsonl` (any text stream, e.g. ``sys.stdin``), :func:`iter_jsonl_socket`
(a TCP server sending JSON lines) and :class:`MQTTSource` (topics on a broker, with
automatic reconnect and duplicate drop) all yield records. Each is a :class:`Source`
(the first three :class:`RecordIterator` objects): ``counts`` of what it read and
skipped, ``on_error`` for malformed lines (``"raise"`` naming the line, or ``"skip"``
and count), ``close()`` and ``with``. ``push`` consumes
the iterable it is given, so feed a live source record by record or in batches::

    adapters = {}
    with MQTTSource("127.0.0.1", 1883, "sensors/#", client_id="rnn", persistent=True) as src:
        for topic, t, values in src:
            ad = adapters.setdefault(topic, SensorAdapter(["temp", "hum"], period=1.0))
            rows = ad.push([(t, values)])   # (T, F), often T = 0 or 1

Checkpoints: ``state_dict()`` is plain JSON; ``load_state_dict`` into an adapter of the
same configuration resumes with identical output.

Examples
--------
>>> import io
>>> from streamrnn.adapters.sensor import SensorAdapter, iter_jsonl
>>> lines = io.StringIO(
...     '{"timestamp": 0.2, "temp": 20}\\n'
...     '{"timestamp": 1.1, "temp": 21, "hum": 50}\\n'
...     '{"timestamp": 0.9, "temp": 99}\\n'          # late: dropped, counted
...     '{"timestamp": 2.6, "temp": NaN}\\n'         # non-finite: masked, counted
...     '{"timestamp": 3.5, "temp": 22, "hum": 52}\\n'
... )
>>> ad = SensorAdapter(["temp", "hum"], period=1.0, normalize=False, age_features=False)
>>> rows = ad.push(iter_jsonl(lines))
>>> ad.last_times.tolist()
[1.0, 2.0, 3.0]
>>> rows
tensor([[20.,  0.,  0.,  0.],
        [21., 50.,  1.,  1.],
        [21., 50.,  0.,  0.]])
>>> ad.counts["late"], ad.counts["non_finite"]
(1, 1)
"""

from __future__ import annotations

from ._core import SensorAdapter
from ._parse import Invalid, to_seconds
from .sources import MQTTSource, RecordIterator, Source, iter_csv, iter_jsonl, iter_jsonl_socket

__all__ = [
    "Invalid",
    "MQTTSource",
    "RecordIterator",
    "SensorAdapter",
    "Source",
    "iter_csv",
    "iter_jsonl",
    "iter_jsonl_socket",
    "to_seconds",
]


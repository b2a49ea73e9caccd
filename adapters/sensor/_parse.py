"""Timestamp and value parsing shared by the sensor adapter and its sources (private).

Every function raises ``ValueError`` naming what it parsed, the rule and the value seen.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

__all__ = [
    "Config",
    "Invalid",
    "check_channels",
    "parse_json_record",
    "parse_records",
    "parse_value",
    "to_seconds",
]

_UTC = _dt.timezone.utc


class Invalid:
    """A reading that is not a number: what it was and where it came from.

    The one parse of a value (:func:`parse_value`, in a source or in
    :meth:`SensorAdapter.push <streamrnn.adapters.sensor.SensorAdapter.push>` for a raw
    record) gives a float, ``None`` (missing) or an ``Invalid``; the adapter's
    ``invalid_policy`` then decides (raise naming ``where``, mask or hold) and counts it
    once (``counts["invalid"]``). Sources yield it as the value, never re-parsed.

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.

    Examples
    --------
    >>> from streamrnn.adapters.sensor import Invalid
    >>> bad = Invalid("warm", "log.csv:3: field 'temp'")
    >>> bad, bad.message()
    (Invalid('warm'), "log.csv:3: field 'temp' must be a number, got 'warm'")
    """

    __slots__ = ("raw", "where")

    def __init__(self, raw, where: str = "value") -> None:
        self.raw, self.where = raw, where

    def __repr__(self) -> str:
        return f"Invalid({self.raw!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Invalid) and self.raw == other.raw

    __hash__ = None  # mutable raw values (a JSON object) may be held

    def message(self) -> str:
        """``"<where> must be a number, got <raw>"``."""
        return f"{self.where} must be a number, got {self.raw!r}"


def to_seconds(t, name: str = "timestamp") -> float:
    """Seconds since the Unix epoch (UTC) of a float, datetime, datetime64 or ISO string.

    Naive datetimes and ISO strings without an offset are read as UTC. A trailing ``Z``
    is accepted. Booleans, NaN and infinities are refused.

    Examples
    --------
    >>> from streamrnn.adapters.sensor import to_seconds
    >>> to_seconds("1970-01-01T00:01:40Z"), to_seconds(" 12.5 ")
    (100.0, 12.5)
    """
    if isinstance(t, bool | np.bool_):
        raise ValueError(f"{name} must be float seconds, a datetime or an ISO string, got {t!r}")
    if isinstance(t, numbers.Real):
        value = float(t)
    elif isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_UTC)
        value = t.timestamp()
    elif isinstance(t, np.datetime64):
        if np.isnat(t):
            raise ValueError(f"{name} must be a finite time, got {t!r}")
        value = int(t.astype("datetime64[ns]").astype(np.int64)) / 1e9
    elif isinstance(t, str):
        text = t.strip()
        try:
            value = float(text)
        except ValueError:
            value = _iso_seconds(text, name)
    else:
        raise ValueError(
            f"{name} must be float seconds, a datetime or an ISO string, "
            f"got {type(t).__name__} {t!r}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {t!r}")
    return value


def _iso_seconds(text: str, name: str) -> float:
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        stamp = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"{name} must be float seconds or an ISO-8601 time, got {text!r}"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_UTC)
    return stamp.timestamp()


def parse_value(v, where: str = "value"):
    """A reading as a float, ``None`` (missing) or an :class:`Invalid` (not a number).

    The one parse of a value. Accepts real numbers (booleans as 0 / 1) and numeric
    strings; NaN and infinities come back as floats for the caller's ``nan_policy``; an
    ``Invalid`` is returned as it is (already parsed). ``where`` names the value in the
    ``Invalid``'s message.

    Examples
    --------
    >>> parse_value(" 2.5 "), parse_value(""), parse_value("hot", "field 'temp'")
    (2.5, None, Invalid('hot'))
    """
    if v is None or type(v) is float or type(v) is Invalid:
        return v
    if isinstance(v, numbers.Real):
        try:
            return float(v)
        except OverflowError:  # an int beyond float: as a cast to the output would make it
            return math.copysign(math.inf, v)
    if isinstance(v, str):
        text = v.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return Invalid(v, where)
    return Invalid(v, where)


def parse_json_record(text: str, *, time_key: str, values_key: str | None):
    """``(timestamp, {channel: raw value})`` of one JSON object line.

    Raises ``ValueError`` with the reason for malformed JSON, a non-object, a missing or
    bad timestamp, or a ``values_key`` that is not an object.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if time_key not in obj:
        raise ValueError(f"missing time key {time_key!r}")
    stamp = to_seconds(obj[time_key], name=f"field {time_key!r}")
    if values_key is None:
        values = {k: v for k, v in obj.items() if k != time_key}
    else:
        values = obj.get(values_key)
        if not isinstance(values, dict):
            raise ValueError(f"field {values_key!r} must be a JSON object, got {values!r}")
    return stamp, values


@dataclass(frozen=True)
class Config:
    """The validated configuration of a SensorAdapter (defaults resolved)."""

    channels: tuple
    period: float
    method: str
    nan_policy: str
    invalid_policy: str
    lateness: float
    max_gap: float
    interp_limit: float
    origin: float
    normalize: bool
    ema: float | None
    eps: float
    calendar: bool
    utc_offset: float
    mask_features: bool
    age_features: bool

    @classmethod
    def of(cls, adapter, **resolved) -> Config:
        """The adapter's validated attributes, with ``resolved`` defaults overriding."""
        return cls(**{f.name: resolved.get(f.name, getattr(adapter, f.name)) for f in fields(cls)})

    def to_json(self) -> dict:
        """Plain JSON values (``inf`` as the string ``"inf"``) for checkpoints."""
        out = asdict(self)
        out["channels"] = list(self.channels)
        for key in ("max_gap", "interp_limit"):
            out[key] = repr(out[key]) if math.isinf(out[key]) else out[key]
        return out


def check_channels(channels) -> tuple:
    """``channels`` as a tuple after checking they are unique non-empty strings."""
    if isinstance(channels, str | bytes) or not isinstance(channels, Iterable):
        raise ValueError(f"channels must be a list of channel names, got {channels!r}")
    channels = tuple(channels)
    if not channels:
        raise ValueError("channels must name at least one channel, got []")
    for name in channels:
        if not isinstance(name, str) or not name:
            raise ValueError(f"channels must be non-empty strings, got {name!r}")
    if len(set(channels)) != len(channels):
        dup = sorted({c for c in channels if channels.count(c) > 1})
        raise ValueError(f"channels must be unique, got {dup} more than once")
    return channels


def parse_records(records, index: dict, raising: bool, limit: float,
                  raise_invalid: str | None = None) -> list:
    """Validate and parse records to ``(ts, {channel index: float, None or Invalid},
    unknown)``.

    Each value is parsed once: a float or an :class:`Invalid` from a source is taken
    as it is. A value beyond ``limit`` (the output dtype's largest float) becomes an
    infinity, as a cast would make it. ``raising``: a missing or non-finite value raises;
    ``raise_invalid``: the name of the policy by which an ``Invalid`` raises, naming where
    it came from (``None``: it does not). Raises before returning, so a bad record never
    leaves a push half applied.
    """
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Iterable):
        raise ValueError(
            f"records must be an iterable of (timestamp, {{channel: value}}) pairs, "
            f"got {type(records).__name__}"
        )
    parsed = []
    for n, record in enumerate(records):
        if not isinstance(record, tuple | list) or len(record) != 2:
            raise ValueError(
                f"records[{n}] must be a (timestamp, {{channel: value}}) pair, got {record!r}"
            )
        stamp, mapping = record
        ts = float(stamp) if type(stamp) is float else to_seconds(stamp, f"records[{n}] timestamp")
        if ts != ts or ts in (math.inf, -math.inf):
            raise ValueError(f"records[{n}] timestamp must be finite, got {stamp!r}")
        if type(mapping) is not dict and not isinstance(mapping, Mapping):
            raise ValueError(
                f"records[{n}] values must be a mapping {{channel: value}}, got {mapping!r}"
            )
        values, unknown = {}, 0
        for name, raw in mapping.items():
            i = index.get(name)
            if i is None:
                unknown += 1
                continue
            v = raw if type(raw) is float else parse_value(raw)
            if type(v) is Invalid and v.where == "value":  # raw from the caller: name it
                v.where = f"records[{n}] (t={ts!r}) channel {name!r}"
            if type(v) is float:
                if abs(v) > limit:
                    v = math.copysign(math.inf, v)
                if raising and not math.isfinite(v):
                    raise ValueError(f"nan_policy='raise': records[{n}] (t={ts!r}) channel "
                                     f"{name!r} must be a finite number, got {raw!r}")
            elif v is None:
                if raising:
                    raise ValueError(f"nan_policy='raise': records[{n}] (t={ts!r}) channel "
                                     f"{name!r} must be a finite number, got {raw!r}")
            elif raise_invalid:
                raise ValueError(f"{raise_invalid}='raise': {v.message()}")
            values[i] = v
        parsed.append((ts, values, unknown))
    return parsed

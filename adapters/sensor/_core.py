"""SensorAdapter: timestamped records -> fixed-rate, masked, normalised tensors (private).

Public through :mod:`streamrnn.adapters.sensor`, whose docstring describes the rules.
The adapter holds its parts: records wait in :class:`~._arrivals.Arrivals` until they
are final, then the :class:`~._engine.Resampler` turns them into rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from streamrnn.utils import check_bool, check_choice, check_number

from ._arrivals import Arrivals
from ._engine import Resampler
from ._parse import Config, check_channels, parse_records

__all__ = ["SensorAdapter"]

_FORMAT = "streamrnn.adapters.SensorAdapter"
_VERSION = 1
_COUNTS = tuple(
    "records rows late reordered duplicate unknown_channel missing non_finite invalid held "
    "gaps skipped_rows overflow out_of_range".split()
)
#: Largest ``|timestamp| / period``: beyond 2**52 periods the float64 times of
#: consecutive grid rows ``origin + k * period`` are no longer distinct (the spacing of
#: floats there exceeds the period), so no grid exists. Such a record is dropped and
#: counted (``out_of_range``); an ``origin`` there is refused.
MAX_PERIODS = float(2**52)
_CALENDAR = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")


class SensorAdapter:
    """Timestamped sensor records -> fixed-rate multichannel float tensors.

    Records ``(timestamp, {channel: value})`` arrive in any grouping, irregularly, out
    of order within ``lateness``; every ``push`` returns the grid rows it completed.
    The rules (resampling, mask, age, gaps, lateness, NaN policy, normalisation) are
    described in :mod:`streamrnn.adapters.sensor`.

    Parameters
    ----------
    channels : list of str
        The declared channels, in column order. Fixed: a value for any other channel
        is ignored and counted (``unknown_channel``); a declared channel that has not
        reported yet, or has gone silent, is filled and flagged by its mask / age.
    period : float
        Grid step in seconds; rows are at ``origin + k * period``.
    method : {"hold", "linear"}
        Value at a grid time: the last observation at or before it (``"hold"``), or the
        line between it and the next observation (``"linear"``; see ``interp_limit``).
    nan_policy : {"raise", "mask", "hold"}
        What a missing (``None``), non-finite or non-numeric value does: raise
        ``ValueError`` before anything changes; drop it (``"mask"``: the channel is
        simply not observed then); or repeat the channel's last good value as an
        observation (``"hold"``; dropped if there is none yet). Counted either way.
    invalid_policy : {"raise", "mask"} or None
        What a non-numeric value does, if not as ``nan_policy`` (``None``): raise
        ``ValueError`` naming where it came from (a source's file and line), or drop it.
        Values are parsed once, by the source or here; this is their one policy and
        ``counts["invalid"]`` their one count (sources do not judge values).
    lateness : float
        Seconds a record may be older than the newest timestamp seen and still be
        placed in order; older records are dropped and counted (``late``). Rows are
        emitted once time has passed them by ``lateness``.
    max_gap : float or None
        A silence (no record at all) longer than this many seconds emits rows up to
        ``max_gap`` after the last record, skips the rest and resumes at the next
        record (``gaps``, ``skipped_rows``). ``None`` means ``1000 * period``;
        ``math.inf`` (or anything beyond ``2**52`` periods) emits every row of any gap
        up to ``2**20`` rows past the last record (a longer silence is then a gap).
    interp_limit : float or None
        ``"linear"``: longest gap between two observations of one channel that is
        interpolated; wider gaps are held. A row waits at most this long for a
        channel's next observation. ``None`` means ``max_gap``.
    origin : float
        Grid anchor in seconds (the default 0.0 puts rows on whole multiples of
        ``period`` since the epoch).
    normalize : bool
        Standardise each value column by the channel's running mean and variance,
        updated with each observation at or before the row.
    ema : float or None
        ``None``: cumulative Welford statistics; ``alpha`` in (0, 1]: exponentially
        weighted mean and variance.
    eps : float
        Added to the variance before the square root.
    calendar : bool
        Append hour-of-day and day-of-week phases as sin / cos (UTC + ``utc_offset``).
    utc_offset : float
        Seconds added to the grid time before the calendar features.
    mask_features, age_features : bool
        Include the per-channel mask / age columns.
    dtype : torch.dtype
        Floating dtype of the output.

    Attributes
    ----------
    counts : dict
        ``records``, ``rows`` emitted, ``late``, ``reordered`` (accepted out of order),
        ``duplicate`` (values whose channel already had one at that timestamp; the
        first wins), ``unknown_channel``, ``missing``, ``non_finite``, ``invalid``
        (values; a value too large for ``dtype`` counts as non-finite), ``held`` (values
        repaired by ``nan_policy="hold"``), ``gaps``, ``skipped_rows``, ``overflow``
        (output cells zeroed because float64 arithmetic overflowed on values near 1e308),
        and ``out_of_range`` (records dropped because ``|timestamp| > 2**52 * period``,
        where consecutive grid times are no longer distinct floats: ``1e300`` is one; the
        present epoch time is not, down to a period of 1 microsecond).
    last_times : Tensor
        Grid times (float64 seconds) of the rows returned by the last push / flush.

    Shape
    -----
    push: records -> ``(T, F)`` with ``F = C * (1 + mask + age) + 4 * calendar``;
    column order in :attr:`feature_names`.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> from streamrnn.adapters.sensor import SensorAdapter
    >>> ad = SensorAdapter(["temp", "hum"], period=1.0, normalize=False)
    >>> ad.feature_names
    ['temp', 'hum', 'temp:mask', 'hum:mask', 'temp:age', 'hum:age']
    >>> ad.push([(0.0, {"temp": 20.0}), (1.5, {"temp": 21.0, "hum": 40.0})])
    tensor([[20.,  0.,  1.,  0.,  0.,  0.],
            [20.,  0.,  0.,  0.,  1.,  1.]])
    >>> ad.push([(3.2, {"temp": 22.0, "wind": 3.0})])  # "wind" is not declared
    tensor([[21.0000, 40.0000,  1.0000,  1.0000,  0.5000,  0.5000],
            [21.0000, 40.0000,  0.0000,  0.0000,  1.5000,  1.5000]])
    >>> ad.last_times.tolist(), ad.counts["unknown_channel"]
    ([2.0, 3.0], 1)

    A checkpoint is plain JSON; the resumed adapter continues exactly:

    >>> import json, torch
    >>> twin = SensorAdapter(["temp", "hum"], period=1.0, normalize=False)
    >>> twin.load_state_dict(json.loads(json.dumps(ad.state_dict())))
    >>> more = [(4.5, {"temp": 23.0})]
    >>> torch.equal(twin.push(more), ad.push(more)), ad.last_times.tolist()
    (True, [4.0])
    """

    def __init__(
        self,
        channels,
        period: float,
        *,
        method: str = "hold",
        nan_policy: str = "mask",
        invalid_policy: str | None = None,
        lateness: float = 0.0,
        max_gap: float | None = None,
        interp_limit: float | None = None,
        origin: float = 0.0,
        normalize: bool = True,
        ema: float | None = None,
        eps: float = 1e-8,
        calendar: bool = False,
        utc_offset: float = 0.0,
        mask_features: bool = True,
        age_features: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.channels = check_channels(channels)
        self.period = check_number("period", period, low=0.0, low_open=True)
        check_choice("method", method, ("hold", "linear"))
        check_choice("nan_policy", nan_policy, ("raise", "mask", "hold"))
        self.method, self.nan_policy = method, nan_policy
        if invalid_policy is not None:
            check_choice("invalid_policy", invalid_policy, ("raise", "mask"))
        self.invalid_policy = invalid_policy
        self.lateness = check_number("lateness", lateness, low=0.0)
        self.max_gap = max_gap
        gap = (
            1000.0 * self.period
            if max_gap is None
            else check_number("max_gap", max_gap, low=0.0, low_open=True, allow_inf=True)
        )
        self.interp_limit = interp_limit
        reach = (
            gap
            if interp_limit is None
            else check_number("interp_limit", interp_limit, low=0.0, low_open=True, allow_inf=True)
        )
        self.origin = check_number("origin", origin)
        self.normalize = check_bool("normalize", normalize)
        self.ema = None if ema is None else check_number("ema", ema, low=0.0, low_open=True)
        if self.ema is not None and self.ema > 1.0:
            raise ValueError(f"ema must be in (0, 1], got {ema!r}")
        self.eps = check_number("eps", eps, low=0.0, low_open=True)
        self.calendar = check_bool("calendar", calendar)
        self.utc_offset = check_number("utc_offset", utc_offset)
        self.mask_features = check_bool("mask_features", mask_features)
        self.age_features = check_bool("age_features", age_features)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        self._span = MAX_PERIODS * self.period  # largest |timestamp| with a grid
        for name, value in (("origin", abs(self.origin)), ("lateness", self.lateness)):
            if value > self._span:
                raise ValueError(f"{name} must be within 2**52 periods (<= {self._span:g} "
                                 f"for period={self.period!r}), got {value!r}")
        if gap > self._span:  # longer than any gap the grid holds: no gap is cut
            gap = math.inf
        self._cfg = Config.of(self, max_gap=gap, interp_limit=reach,
                              invalid_policy=invalid_policy or nan_policy)
        self._drop_invalid = invalid_policy == "mask"
        self._raise_invalid = ("invalid_policy" if invalid_policy == "raise" else
                               "nan_policy" if invalid_policy is None and nan_policy == "raise"
                               else None)  # the policy named when a non-number raises
        self._index = {name: i for i, name in enumerate(self.channels)}
        self._limit = torch.finfo(dtype).max
        self.reset()

    # -- description -------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """Column names of the output, in order."""
        names = list(self.channels)
        if self.mask_features:
            names += [f"{c}:mask" for c in self.channels]
        if self.age_features:
            names += [f"{c}:age" for c in self.channels]
        return names + (list(_CALENDAR) if self.calendar else [])

    @property
    def num_features(self) -> int:
        """``F``, the number of output columns."""
        return len(self.feature_names)

    @property
    def mean(self) -> Tensor:
        """Running mean of each channel, float64 ``(C,)`` (0 before any observation)."""
        return torch.tensor(self._engine.stats.mean, dtype=torch.float64)

    @property
    def std(self) -> Tensor:
        """Running standard deviation of each channel, float64 ``(C,)``."""
        return torch.from_numpy(self._engine.stats.var()).sqrt()

    @property
    def frozen(self) -> bool:
        """Whether the normalisation statistics are frozen."""
        return self._engine.stats.frozen

    def freeze(self) -> None:
        """Stop updating the normalisation statistics (they still apply).

        Observations behind rows not yet emitted no longer update them.
        """
        self._engine.stats.frozen = True

    def unfreeze(self) -> None:
        """Resume updating the normalisation statistics."""
        self._engine.stats.frozen = False

    # -- streaming -----------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything: timeline, buffered records, statistics and counts."""
        self.counts = dict.fromkeys(_COUNTS, 0)
        self._engine = Resampler(self._cfg, self.counts)
        self._arrivals = Arrivals(self._engine, self.counts, lateness=self.lateness,
                                  span=self._span, drop_invalid=self._drop_invalid)
        self.last_times = torch.zeros(0, dtype=torch.float64)

    def push(self, records) -> Tensor:
        """Add records; return the grid rows they completed.

        Parameters
        ----------
        records : iterable of (timestamp, mapping)
            Timestamps are float seconds since the epoch, datetimes or ISO-8601 strings
            (naive means UTC); values are numbers or numeric strings. ``(t, {})`` is a
            heartbeat: it advances time without observing anything. With
            ``nan_policy="raise"`` a bad value raises before any record is applied;
            a malformed record or timestamp always raises before anything changes.

        Returns
        -------
        Tensor
            Rows completed by this push, in time order; their grid times are in
            :attr:`last_times`.

        Shape
        -----
        ``(T, F)``, ``T >= 0``.
        """
        parsed = parse_records(records, self._index, self.nan_policy == "raise", self._limit,
                               self._raise_invalid)
        arrivals = self._arrivals
        for ts, values, unknown in parsed:
            arrivals.add(ts, values, unknown)
        if arrivals.max_seen is None:
            return self._output(None)
        return self._output(self._engine.emit(arrivals.max_seen - self.lateness, final=False))

    def flush(self) -> Tensor:
        """End of data for now: emit every row up to the newest timestamp.

        Records at or before that timestamp are late afterwards; ``"linear"`` holds
        channels whose next observation has not arrived.

        Shape
        -----
        ``(T, F)``.
        """
        newest = self._arrivals.close()
        if newest is None:
            return self._output(None)
        return self._output(self._engine.emit(newest, final=True))

    def _output(self, block) -> Tensor:
        if block is None:
            self.last_times = torch.zeros(0, dtype=torch.float64)
            return torch.zeros(0, self.num_features, dtype=self.dtype)
        self.last_times = torch.from_numpy(block[0])
        rows = torch.from_numpy(block[1]).to(self.dtype)
        self.counts["rows"] += rows.shape[0]
        return rows

    # -- checkpointing -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume, as plain JSON-able values.

        ``load_state_dict`` of it into an adapter with the same configuration gives
        output identical to never having stopped.
        """
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "config": self._cfg.to_json(),
            "counts": dict(self.counts),
            **self._arrivals.state(self.channels),  # max_seen, closed, pending
            "engine": self._engine.state(self.channels),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; refuses one from a different configuration."""
        if not isinstance(state, Mapping) or state.get("format") != _FORMAT:
            raise ValueError(f"state must be a SensorAdapter state_dict (format {_FORMAT!r})")
        if state.get("version") != _VERSION:
            raise ValueError(f"state version must be {_VERSION}, got {state.get('version')!r}")
        mine = self._cfg.to_json()
        theirs = state.get("config")
        theirs = dict(theirs) if isinstance(theirs, Mapping) else {}
        theirs.setdefault("invalid_policy", theirs.get("nan_policy"))  # before it existed
        diff = sorted(k for k in mine if theirs.get(k) != mine[k])
        if diff:
            detail = ", ".join(f"{k}={theirs.get(k)!r} (adapter has {mine[k]!r})" for k in diff)
            raise ValueError(f"state config does not fit this adapter: {detail}")
        counts = dict.fromkeys(_COUNTS, 0)
        engine = Resampler(self._cfg, counts)
        try:
            engine.load(state["engine"], self._index)
            pending = {
                float(ts): {
                    self._index[c]: None if v is None else float(v) for c, v in vals.items()
                }
                for ts, vals in state["pending"]
            }
            counts.update({k: int(state["counts"].get(k, 0)) for k in _COUNTS})
            newest, closed = state["max_seen"], state["closed"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"state is not a valid SensorAdapter state_dict: {err!r}") from err
        self.counts, self._engine = counts, engine
        self._arrivals = Arrivals(engine, counts, lateness=self.lateness, span=self._span,
                                  drop_invalid=self._drop_invalid, pending=pending,
                                  max_seen=newest, closed=closed)
        self.last_times = torch.zeros(0, dtype=torch.float64)

"""The speech service: PCM frames in, posteriors and digits out, all streams in one bank
(private; the protocol is documented in :mod:`streamrnn.apps.serve`)."""

from __future__ import annotations

import json

import numpy as np
import orjson

from ..speech import LABELS, DigitBank

__all__ = ["SpeechService"]

def _DUMPS(obj) -> str:  # noqa: N802  compact JSON, numpy arrays as lists
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()
_FORMATS = {"int16": (2, "<i2"), "float32": (4, "<f4")}
MIN_RATE, MAX_RATE = 1000, 384_000
_INV_INT16 = np.float32(1.0 / 32768.0)


def _flag(value: str | None, name: str) -> bool:
    if value in (None, "", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise ValueError(f"{name} must be 0/1 or false/true, got {value[:20]!r}")


class _Stream:
    """What the service keeps per stream besides the bank's own parts."""

    __slots__ = ("rate", "width", "dtype", "format", "spectrogram", "chunks", "frames")

    def __init__(self, rate: int, fmt: str, spectrogram: bool) -> None:
        self.rate, self.format, self.spectrogram = rate, fmt, spectrogram
        self.width, self.dtype = _FORMATS[fmt]
        self.chunks = 0  # binary frames received (rejected ones included)
        self.frames = 0


class SpeechService:
    """Spoken digits for many WebSocket streams, one :class:`DigitBank` for all.

    Parameters
    ----------
    bank : DigitBank
        Holds every stream; its ``max_streams`` bounds the service.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> svc = SpeechService(DigitBank.load(max_streams=4))
    >>> svc.open("a", {"rate": "8000"})["model_rate"]
    8000
    >>> svc.binary("a", bytes(3200))  # 200 ms of int16 silence
    >>> [json.loads(m)["type"] for m in svc.step()["a"]]
    ['frames']
    >>> svc.binary("a", bytes(3))
    Traceback (most recent call last):
    ...
    ValueError: chunk 2 has 3 bytes: int16 PCM needs a multiple of 2
    """

    path = "/ws/speech"

    def __init__(self, bank: DigitBank) -> None:
        self.bank = bank
        self._streams: dict[str, _Stream] = {}
        self._fresh: set = set()  # streams with frames received since the last step

    def _settings(self, query) -> tuple[int, str, bool]:
        raw = query.get("rate", str(self.bank.sample_rate))
        try:
            rate = int(raw)
        except ValueError:
            rate = None
        if rate is None or not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"rate must be an integer number of Hz in [{MIN_RATE}, "
                             f"{MAX_RATE}], got {raw[:20]!r}")
        fmt = query.get("format", "int16")
        if fmt not in _FORMATS:
            raise ValueError(f"format must be one of {sorted(_FORMATS)}, got {fmt[:20]!r}")
        return rate, fmt, _flag(query.get("spectrogram"), "spectrogram")

    def _info(self, st: _Stream) -> dict:
        return {"rate": st.rate, "format": st.format, "model_rate": self.bank.sample_rate,
                "hop_s": self.bank.hop_length / self.bank.sample_rate, "labels": list(LABELS),
                "chunk": st.chunks, "frame": st.frames}

    def check(self, query) -> None:
        """Validate a connection's query (``ValueError`` names the bad setting)."""
        self._settings(query)

    def open(self, key: str, query) -> dict:
        """Start a stream with the connection's ``rate``, ``format`` and ``spectrogram``."""
        rate, fmt, spec = self._settings(query)
        self.bank.open(key, input_rate=rate)  # raises when full
        st = self._streams[key] = _Stream(rate, fmt, spec)
        return self._info(st)

    def resume(self, key: str, query) -> dict:
        """Continue a stream; its rate and format must be those it was opened with."""
        st = self._streams[key]
        rate, fmt, spec = self._settings(
            {"rate": str(st.rate), "format": st.format, **dict(query)})
        if (rate, fmt) != (st.rate, st.format):
            raise ValueError(f"stream {key!r} was opened at rate {st.rate} format "
                             f"{st.format}; it cannot resume at rate {rate} format {fmt}")
        st.spectrogram = spec
        return self._info(st)

    def close(self, key: str) -> None:
        """Forget a stream."""
        del self._streams[key]
        self.bank.close(key)
        self._fresh.discard(key)

    def where(self, key: str) -> dict:
        """Fields naming the last frame of ``key`` (for an error message)."""
        return {"chunk": self._streams[key].chunks}

    def cost(self, key: str, data: bytes) -> float:
        """Audio seconds in a binary frame (for the rate limit)."""
        st = self._streams[key]
        return len(data) / (st.width * st.rate)

    def binary(self, key: str, data: bytes) -> None:
        """Accept one PCM frame: its features are computed now, the model steps at the
        next :meth:`step`. ``ValueError`` (stream unchanged) for a malformed frame."""
        st = self._streams[key]
        st.chunks += 1
        if len(data) % st.width:
            raise ValueError(f"chunk {st.chunks} has {len(data)} bytes: {st.format} PCM "
                             f"needs a multiple of {st.width}")
        pcm = np.frombuffer(data, dtype=st.dtype)
        if st.format == "int16":  # x / 32768 in float32, as the front end scales int16
            # (exact: a power of two), so the chunk takes its compiled one-call path
            pcm = np.multiply(pcm, _INV_INT16, dtype=np.float32)
        try:
            self.bank.accept(key, pcm)
        except ValueError as exc:
            raise ValueError(f"chunk {st.chunks} refused: {exc}") from None
        self._fresh.add(key)

    def text(self, key: str, data: str) -> list[str]:
        """A control message: ``{"type": "flush"}`` ends the utterance (the digits of
        the last word come out, the stream starts over) or ``{"type": "ping"}``."""
        try:
            msg = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"text messages must be JSON: {exc}") from None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "ping":
            return [_DUMPS({"type": "pong", **{k: v for k, v in msg.items() if k == "t"}})]
        if kind == "flush":
            st = self._streams[key]
            self._fresh.discard(key)
            out = self._replies(st, self.bank.flush(key))
            st.frames = 0
            return out + [_DUMPS({"type": "flushed", "chunk": st.chunks})]
        raise ValueError(f'text messages must be {{"type": "flush"}} or {{"type": "ping"}}, '
                         f"got {str(data)[:60]!r}")

    def step(self) -> dict:
        """One batched step of every stream with new frames; ``{key: [JSON texts]}``."""
        results = self.bank.step()
        out = {}
        for key in self._fresh:
            out[key] = self._replies(self._streams[key], results.get(key))
        self._fresh = set()
        return out

    @staticmethod
    def _replies(st: _Stream, res) -> list[str]:
        """A ``frames`` message for one stream's step (empty if no frame completed), then
        one ``digit`` message per detection."""
        msg = {"type": "frames", "chunk": st.chunks, "frame": st.frames, "post": []}
        if res is None:
            return [_DUMPS(msg)]
        msg["frame"] = res.first_frame
        msg["post"] = np.round(res.posteriors, 3)
        if st.spectrogram:
            msg["mel"] = np.round(res.features, 2)
        st.frames = res.first_frame + len(res.posteriors)
        digits = [_DUMPS({"type": "digit", **d.as_dict(), "chunk": st.chunks})
                  for d in res.detections]
        return [_DUMPS(msg), *digits]

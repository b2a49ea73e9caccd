"""DigitBank: many live digit streams, one shared model stepped as one batch (private).

Public as :class:`streamrnn.apps.speech.DigitBank`. Each stream keeps what is its own (a
front end with its input rate, the endpointer, the decoder, its frame count); the model's
states of all streams live in one :class:`streamrnn.StreamBank`, so one :meth:`step`
runs every stream with new frames in one batched call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from streamrnn import StreamBank
from streamrnn.adapters.audio import AudioFeatures

from ._decode import DECODER_DEFAULTS, FrameDecoder, frames_since, softmax
from ._endpoint import Endpointer, energy_reference_db, frame_energy_db
from ._io import FEATURE_KEYS
from ._types import Detection, framing, start_stream

__all__ = ["DigitBank", "StreamResult"]

_NO_FRAMES = np.zeros((0, 0), dtype=np.float32)


class _WarmStart(torch.nn.Module):
    """The recogniser's model, whose initial state is the warm state (not zeros).

    A recogniser starts a stream from the state its model reaches after ``warmup_ms`` of
    digital silence; a bank starts (and resets) a stream from ``model.initial_state``, so
    this wrapper hands out that warm state for every new row. Everything else is the model.
    """

    def __init__(self, model: torch.nn.Module, warm) -> None:
        super().__init__()
        self.model = model
        self.warm = warm  # State with B = 1

    @property
    def input_size(self) -> int:
        return self.model.input_size

    @property
    def output_size(self) -> int:
        return self.model.output_size

    def initial_state(self, batch_size: int, *, device=None, dtype=None):
        def rows(t):
            shape = (t.shape[0], batch_size, *t.shape[2:])
            return t.to(device=device, dtype=dtype).expand(shape).clone()

        return self.warm.map(rows)

    def forward(self, x, state=None):
        return self.model(x, state)

    def config(self) -> dict:
        return {"warm_start": True, **self.model.config()}


@dataclass(frozen=True)
class StreamResult:
    """What one :meth:`DigitBank.step` gave one stream.

    Attributes
    ----------
    first_frame : int
        Index (in the stream) of the first frame in ``features``.
    features : numpy.ndarray
        ``(T, F)`` float32: the log-mel frames the model stepped on.
    posteriors : numpy.ndarray
        ``(T, 11)`` float32: the class posteriors of those frames (:data:`LABELS` order).
    detections : list of Detection
        The digits recognised in those frames.

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.

    Examples
    --------
    >>> import numpy as np
    >>> r = StreamResult(3, np.zeros((2, 40), np.float32), np.zeros((2, 11), np.float32), [])
    >>> r.first_frame, r.features.shape, r.detections
    (3, (2, 40), [])
    """

    first_frame: int
    features: np.ndarray
    posteriors: np.ndarray
    detections: list = field(default_factory=list)


class _Track:
    """One stream's own parts: front end, endpointer, decoder, frame count, held frames."""

    __slots__ = ("features", "endpointer", "decoder", "frames", "held")

    def __init__(self, features: AudioFeatures, decoder: FrameDecoder) -> None:
        self.features = features
        start_stream(features)
        self.endpointer = Endpointer()
        self.decoder = decoder
        self.frames = 0
        self.held: list[np.ndarray] = []

    def reset(self) -> None:
        start_stream(self.features)
        self.endpointer.reset()
        self.decoder.reset()
        self.frames = 0
        self.held = []


class DigitBank:
    """Many live spoken-digit streams, keyed; every stream with new audio in one batch.

    Each stream gets exactly what a :class:`DigitRecognizer` gives it alone (the same
    front end, warm start, endpointer and decoder; the model is the recogniser's, stepped
    by :class:`streamrnn.StreamBank` for all streams at once, so posteriors agree with the
    recogniser's to float32 rounding and the detections are the same), whatever the other
    streams do.

    Parameters
    ----------
    recognizer : DigitRecognizer
        Where the model, the front end's settings, the decoder's settings, ``flush_ms``
        and ``warmup_ms`` come from (:meth:`DigitRecognizer.load` reads any saved one).
    max_streams : int
        Most open streams; :meth:`open` refuses one more (nothing is evicted silently).

    Attributes
    ----------
    sample_rate, hop_length, n_features : int
        The model's rate, the frame hop (samples at that rate) and features per frame.

    Shape
    -----
    accept: pcm ``(samples,)`` at the stream's rate (or int16 bytes) -> frames held;
    step -> ``{key: StreamResult}`` with features ``(T, F)`` and posteriors ``(T, 11)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import numpy as np
    >>> from streamrnn.adapters.audio import WavSource
    >>> from streamrnn.apps.speech import DigitBank, demo_path
    >>> bank = DigitBank.load(max_streams=8)
    >>> bank.open("a"); bank.open("b", input_rate=16000)
    >>> chunks = list(WavSource(demo_path(), chunk_ms=20))
    >>> found = []
    >>> for chunk in chunks:  # "a" speaks, "b" is silent, both in every step
    ...     out = bank.push({"a": chunk, "b": np.zeros(320, dtype=np.float32)})
    ...     if "a" in out:  # not in the last step: its 59 samples make no frame
    ...         found += out["a"].detections
    >>> found += bank.flush("a").detections
    >>> [d.digit for d in found], out["a"].posteriors.shape[1], out["a"].features.shape[1]
    ([2, 7, 5, 0, 9], 11, 40)
    >>> sorted(bank.keys()), bank.frames("a"), bank.frames("b")  # "a" flushed: starts over
    (['a', 'b'], 0, 683)
    """

    def __init__(self, recognizer, *, max_streams: int = 10_000) -> None:
        for attr in ("model", "features", "decoder", "flush_ms", "warmup_ms"):
            if not hasattr(recognizer, attr):
                raise ValueError(f"recognizer must be a DigitRecognizer; it has no {attr!r}")
        if isinstance(max_streams, bool) or not isinstance(max_streams, int) or max_streams < 1:
            raise ValueError(f"max_streams must be an integer >= 1, got {max_streams!r}")
        self.max_streams = max_streams
        self.model = recognizer.model
        fe = recognizer.features
        self._feature_cfg = {k: getattr(fe, k) for k in FEATURE_KEYS}
        self._decoder_cfg = {k: getattr(recognizer.decoder, k) for k in DECODER_DEFAULTS}
        self.flush_ms = recognizer.flush_ms
        self.warmup_ms = recognizer.warmup_ms
        self.sample_rate = fe.sample_rate
        self.n_features = fe.n_features
        self.hop_length = fe.hop_length
        self._framing = framing(fe)
        self._ref_db = energy_reference_db(fe)
        warm = self._warm_state()
        self._bank = StreamBank(_WarmStart(self.model, warm), max_streams=max_streams)
        self._tracks: dict = {}

    @classmethod
    def load(cls, path=None, *, max_streams: int = 10_000) -> DigitBank:
        """A bank around :meth:`DigitRecognizer.load(path) <DigitRecognizer.load>`
        (``None``: the shipped weights).

        Examples
        --------
        >>> DigitBank.load().sample_rate
        8000
        """
        from . import DigitRecognizer

        return cls(DigitRecognizer.load(path), max_streams=max_streams)

    def _warm_state(self):
        """The model state after ``warmup_ms`` of digital silence (as the recogniser's)."""
        n = round(self.warmup_ms * self.sample_rate / 1000)
        fe = AudioFeatures(**self._feature_cfg)
        feats = fe.offline(np.zeros(n, dtype=np.float32))
        dtype = next(self.model.parameters()).dtype
        state = self.model.initial_state(1, device="cpu", dtype=dtype)
        if len(feats):
            with torch.no_grad():
                _, state = self.model(feats[None].to(dtype), state)
        return state.detach().clone()

    # ------------------------------------------------------------------ streams

    def open(self, key, *, input_rate: int | None = None) -> None:
        """Start stream ``key`` whose PCM arrives at ``input_rate`` Hz (``None``: the
        model's); it is resampled with soxr when the rates differ.

        ``ValueError`` if the key is open already, the bank is full, or the rate is bad.
        """
        if key in self._tracks:
            raise ValueError(f"key {key!r} is open already")
        if len(self._tracks) >= self.max_streams:
            raise ValueError(
                f"max_streams = {self.max_streams} streams are open; close one first"
            )
        features = AudioFeatures(**self._feature_cfg, input_rate=input_rate)
        self._tracks[key] = _Track(features, FrameDecoder(**self._decoder_cfg))

    def close(self, key) -> None:
        """Forget stream ``key`` (its state, front end and decoder); ``KeyError`` if none."""
        del self._tracks[key]
        if key in self._bank:
            self._bank.drop(key)

    def __contains__(self, key) -> bool:
        return key in self._tracks

    def __len__(self) -> int:
        return len(self._tracks)

    def keys(self) -> list:
        """Open streams, in the order they were opened."""
        return list(self._tracks)

    def frames(self, key) -> int:
        """Frames of stream ``key`` stepped so far."""
        return self._tracks[key].frames

    def input_rate(self, key) -> int:
        """The PCM rate stream ``key`` was opened with."""
        return self._tracks[key].features.input_rate

    # ------------------------------------------------------------------ audio in

    def accept(self, key, pcm) -> int:
        """Run stream ``key``'s front end on one chunk now; hold its frames for :meth:`step`.

        ``pcm`` is anything :meth:`AudioFeatures.push` takes. A bad chunk (NaN, wrong
        shape or dtype) raises ``ValueError`` and leaves the stream as it was. Returns the
        frames held for the stream.
        """
        track = self._tracks[key]
        feats = track.features.push(pcm).numpy()
        if len(feats):
            track.held.append(feats)
        return sum(map(len, track.held))

    def step(self) -> dict:
        """Step every stream with held frames in one batched model call and decode them.

        Returns
        -------
        dict
            ``{key: StreamResult}`` for the streams that had frames.
        """
        batch = {}
        for key, track in self._tracks.items():
            if track.held:
                held = track.held
                batch[key] = held[0] if len(held) == 1 else np.concatenate(held)
                track.held = []
        if not batch:
            return {}
        keys = list(batch)
        out = self._bank.push({k: torch.from_numpy(f) for k, f in batch.items()})
        # softmax and frame energies are row-wise: one call each for every stream's frames
        if out.tensor is not None:
            logits = out.tensor.reshape(-1, out.tensor.shape[-1]).numpy()
        else:
            logits = np.concatenate([out[k].numpy() for k in keys])
        feats = np.concatenate([batch[k] for k in keys])
        post = softmax(logits)
        energy = frame_energy_db(feats, self._ref_db).tolist()
        results, at = {}, 0
        for k in keys:
            n = len(batch[k])
            results[k] = self._decode(k, batch[k], post[at : at + n], energy[at : at + n])
            at += n
        return results

    def push(self, chunks: dict) -> dict:
        """:meth:`accept` every ``{key: pcm}``, then :meth:`step` (open keys only).

        Float chunks are checked for NaN / inf before any stream changes (``ValueError``
        naming the key). A chunk the front end refuses for another reason raises
        ``ValueError`` naming its key after the chunks before it were accepted (their
        frames are held for the next :meth:`step`).
        """
        missing = [k for k in chunks if k not in self._tracks]
        if missing:
            raise ValueError(f"chunks must be for open streams; not open: {missing[:5]}")
        for key, pcm in chunks.items():
            if isinstance(pcm, np.ndarray | torch.Tensor):
                arr = pcm.numpy() if isinstance(pcm, torch.Tensor) else pcm
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise ValueError(f"chunk for key {key!r} has a non-finite sample")
        for key, pcm in chunks.items():
            try:
                self.accept(key, pcm)
            except ValueError as exc:
                raise ValueError(f"chunk for key {key!r}: {exc}") from exc
        return self.step()

    def flush(self, key) -> StreamResult:
        """End stream ``key``'s utterance: ``flush_ms`` of silence, decode the rest, then
        start it over (warm state, fresh front end and decoder; the stream stays open).

        Returns the frames stepped by the flush (held ones included) and their digits.
        """
        track = self._tracks[key]
        n = round(self.flush_ms * track.features.input_rate / 1000)
        self.accept(key, np.zeros(n, dtype=np.float32))
        tail = track.features.flush().numpy()
        if len(tail):
            track.held.append(tail)
        feats = np.concatenate(track.held) if track.held else np.zeros(
            (0, self.n_features), dtype=np.float32)
        track.held = []
        logits = self._bank.push({key: torch.from_numpy(feats)})[key].numpy()
        energy = frame_energy_db(feats, self._ref_db).tolist()
        result = self._decode(key, feats, softmax(logits), energy)
        track.reset()
        if key in self._bank:
            self._bank.reset(key)
        return result

    # ------------------------------------------------------------------ decoding

    def _decode(self, key, feats: np.ndarray, post: np.ndarray, energy: list) -> StreamResult:
        """Endpointer and decoder over one stream's frames (posteriors and energies given),
        as the recogniser runs them."""
        track = self._tracks[key]
        endpointer, decoder, k = track.endpointer, track.decoder, track.frames
        first, found = k, []
        for t in range(len(feats)):
            e = energy[t]
            endpointer.update(e)
            last = endpointer.last_voiced
            digit = decoder.update(post[t], frames_since(last, k), e)
            if digit is not None:
                found.append(Detection.at(digit, k, last, *self._framing))
            k += 1
        track.frames = k
        return StreamResult(first, feats, post, found)

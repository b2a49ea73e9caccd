"""Live spoken-digit recognition: PCM chunks in, digits out as they are spoken.

:class:`DigitRecognizer` chains the streaming log-mel front end
(:class:`~streamrnn.adapters.audio.AudioFeatures`), a recurrent model that predicts at
every 10 ms frame one of 11 classes (the digits 0-9 and blank: silence, noise, the gap
between words), an energy endpointer and a decoder. It ships with a model trained on the
Free Spoken Digit Dataset (8 kHz, 5 speakers; CC BY-SA 4.0, see ``data/ATTRIBUTION.md``),
which :meth:`DigitRecognizer.load` reads by default; ``examples/train_digits.py`` trains
and evaluates it (leave-one-speaker-out).

Decoding (frame labels, no CTC)
-------------------------------
Training labels each frame (10 ms) blank, except in a spoken word, found by energy
endpointing of the training clip (:func:`word_bounds`): frames from 40 % into the word to
50 ms after its end get the digit, and the word's first 40 % is left out of the loss (the
model may already name the digit there, or still say blank). Clips are padded with
silence and noise, so silence and noise are blank.

At run time the model itself segments: a word is a run of frames where blank has
posterior ``< 0.5`` (blank runs shorter than ``release_frames`` inside it do not end
it). At the ``release_frames``-th blank frame after the word, the digit with the largest
summed posterior over the word's frames is emitted (each frame's vote weighted ``decay``
times the next frame's: below 1, the end of the word, where the causal model has heard
the most of it, counts most), if the word lasted ``min_frames`` frames or more, that
digit's weighted mean posterior is ``>= threshold``, the frame energy from the word's
start to the emission spans ``min_range_db`` or more (a word rises
and falls; a noise that switches on and stays does not: measured 4-7 dB for pink and
brown noise onsets the model mistook for a word, >= 24 dB for every clean FSDD word
checked), and the energy endpointer heard a voiced frame within the last
``voice_frames`` frames. Each word is emitted at most once; two words need a pause of
about ``release_frames`` frames between the model's word ends (~0.1-0.2 s of silence).

A stream starts from the model state reached after ``warmup_ms`` of digital silence,
not from zeros, so a recording that opens with speech is heard like one that opens with a
pause (in leave-one-speaker-out tests, this lifted clip accuracy by 15-25 points). Its
front end starts with ``P`` samples of silence (:func:`lead_samples`: 160, 20 ms, for the
shipped 25 ms window and 10 ms hop), so its first frames span its start and every chunk
of ``n`` hops makes exactly ``n`` frames; the exported graph carries the same ``P``
samples as state.

Time and latency
----------------
``time_s`` is the stream time of the end of the frame that triggered the emission (frame
``k`` ends at sample ``k * hop + win - P`` of the model-rate signal). ``latency_ms`` is
``time_s`` minus the end of the last voiced frame the endpointer has heard (its estimate
of where the word ended): about ``release_frames`` frames plus the model's hangover
(~100 ms). Voiced: frame energy above both the noise floor (the quietest frame of the
last 1.5 s) + 12 dB and -55 dB re full-scale RMS.

Examples
--------
>>> from streamrnn.adapters.audio import WavSource
>>> from streamrnn.apps.speech import DigitRecognizer, demo_path
>>> recognizer = DigitRecognizer.load()  # the shipped weights
>>> source = WavSource(demo_path(), chunk_ms=20)
>>> found = []
>>> for chunk in source:  # 20 ms at a time, as from a microphone
...     found += recognizer.push(chunk)
>>> found += recognizer.flush()
>>> [d.digit for d in found]
[2, 7, 5, 0, 9]
"""

from __future__ import annotations

import copy
import os
from importlib import resources

import numpy as np
import torch

from streamrnn.adapters.audio import AudioFeatures
from streamrnn.stream import Stream
from streamrnn.utils import check_number

from ._bank import DigitBank, StreamResult
from ._cli import listen_main
from ._decode import DECODER_DEFAULTS, FrameDecoder, frames_since
from ._endpoint import Endpointer, energy_reference_db, frame_energy_db
from ._export import OnnxDigitRecognizer, export_onnx
from ._io import FEATURE_KEYS, build_model, default_weights, read_file, write_file
from ._types import (
    LABELS,
    Detection,
    demo_path,
    framing,
    lead_samples,
    start_stream,
    word_bounds,
)

__all__ = [
    "LABELS", "Detection", "DigitBank", "DigitRecognizer", "OnnxDigitRecognizer",
    "demo_path", "export_onnx", "lead_samples", "listen_main", "StreamResult",
    "register_listen", "word_bounds",
]  # fmt: skip


class DigitRecognizer:
    """Streaming spoken-digit recogniser: push PCM in any chunking, get digits as spoken.

    Parameters
    ----------
    model : nn.Module
        A recurrent model (``input_size``, ``initial_state``, ``forward(x, state)``) mapping
        ``features.n_features`` log-mel features to 11 logits per frame (:data:`LABELS`).
        Its weights are copied at construction. It runs in a :class:`~streamrnn.Stream`,
        which steps a built-in cell (LSTM, GRU, RNN of any width and depth; ConvGRU) with a
        ``Readout`` on the compiled engine (:mod:`streamrnn.engines`) and any other model
        on torch.
    features : AudioFeatures
        The front end, as the model was trained with (its ``input_rate`` is the PCM's).
    threshold, min_frames, release_frames, voice_frames, min_range_db, decay
        The decoder (see the module docstring): the least weighted mean posterior of the
        winning digit over a word, in (0, 1]; the fewest frames of a word; the blank frames
        that end a word; how recent (in frames) a voiced frame must be for an emission; the
        least energy range (dB) from a word's start to its emission; and the weight of each
        frame's vote relative to the next frame's, in (0, 1] (1: every frame counts the
        same; the default 0.8 raised leave-one-speaker-out accuracy from 82.0 to 84.7 %).
    flush_ms
        Silence appended by :meth:`flush` so a word at the very end is decoded (>= 0).
    warmup_ms
        A stream starts from the model state after this much digital silence (>= 0;
        computed once), not from zeros: the state the model is in between words, so a
        stream that opens with speech is heard as one that opens with a pause.

    Attributes
    ----------
    frames : int
        Frames of the current stream seen so far.

    Notes
    -----
    A 20 ms push is two frames: a few dozen small ops whose cost is dispatch, which extra
    threads only slow down (measured ~10x slower with 2 threads on a busy 2-core machine).
    A live pipeline does well to call ``torch.set_num_threads(1)`` (``listen_main`` does).

    Shape
    -----
    push: pcm ``(samples,)`` (or bytes, ``(samples, channels)``) -> list of
    :class:`Detection`; features ``(T, F)`` -> logits ``(T, 11)`` inside.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import numpy as np
    >>> rec = DigitRecognizer.load()
    >>> rec.features.sample_rate, rec.features.n_features
    (8000, 40)
    >>> rec.push(np.zeros(1600, dtype=np.float32)), rec.frames  # 200 ms: 20 hops
    ([], 20)
    >>> rec.flush()
    []
    """

    def __init__(
        self,
        model: torch.nn.Module,
        features: AudioFeatures,
        *,
        threshold: float = DECODER_DEFAULTS["threshold"],
        min_frames: int = DECODER_DEFAULTS["min_frames"],
        release_frames: int = DECODER_DEFAULTS["release_frames"],
        voice_frames: int = DECODER_DEFAULTS["voice_frames"],
        min_range_db: float = DECODER_DEFAULTS["min_range_db"],
        decay: float = DECODER_DEFAULTS["decay"],
        flush_ms: float = 300.0,
        warmup_ms: float = 500.0,
    ) -> None:
        if not isinstance(features, AudioFeatures):
            raise ValueError(f"features must be an AudioFeatures, got {type(features).__name__}")
        for attr in ("input_size", "initial_state", "forward"):
            if not hasattr(model, attr):
                raise ValueError(f"model must be a streamrnn recurrent model; it has no {attr!r}")
        if model.input_size != features.n_features:
            raise ValueError(
                f"model.input_size must equal features.n_features = {features.n_features}, "
                f"got {model.input_size}"
            )
        out = getattr(model, "output_size", None)
        if out != len(LABELS):
            raise ValueError(f"model.output_size must be {len(LABELS)} (LABELS), got {out!r}")
        for name, value in (("flush_ms", flush_ms), ("warmup_ms", warmup_ms)):
            check_number(name, value, low=0)
        self.features = features
        self.decoder = FrameDecoder(
            threshold=threshold,
            min_frames=min_frames,
            release_frames=release_frames,
            voice_frames=voice_frames,
            min_range_db=min_range_db,
            decay=decay,
        )
        self.threshold, self.min_frames = self.decoder.threshold, self.decoder.min_frames
        self.release_frames, self.voice_frames = self.decoder.release_frames, voice_frames
        self.min_range_db, self.decay = self.decoder.min_range_db, self.decoder.decay
        self.flush_ms = float(flush_ms)
        self.model = copy.deepcopy(model).eval()
        self._stream = Stream(self.model)
        self.warmup_ms = float(warmup_ms)
        self._warm = self._warm_state()
        self.endpointer = Endpointer()
        self._ref_db = energy_reference_db(features)
        self.reset()

    # ------------------------------------------------------------------ persistence

    @classmethod
    def load(
        cls, path=None, *, input_rate: int | None = None, channels: str = "raise"
    ) -> DigitRecognizer:
        """Read a recogniser saved by :meth:`save`; ``None`` reads the shipped weights.

        Parameters
        ----------
        path : str, os.PathLike or None
            A ``.safetensors`` file written by :meth:`save`.
        input_rate : int or None
            Rate of the PCM you will push; ``None`` is the model's (8 kHz for the shipped
            one). Another rate is resampled on the fly.
        channels : str
            Multi-channel PCM: ``"raise"``, ``"mean"`` or ``"first"`` (as in AudioFeatures).

        Examples
        --------
        >>> DigitRecognizer.load(input_rate=16000).features.input_rate
        16000
        """
        if path is None:
            with resources.as_file(default_weights()) as real:
                tensors, header = read_file(real)
                where = os.fspath(real)
        else:
            tensors, header = read_file(path)
            where = os.fspath(path)
        feat_cfg = header["features"]
        missing = [k for k in FEATURE_KEYS if k not in feat_cfg]
        if missing:
            raise ValueError(f"path {where!r}: the features header lacks {missing}")
        try:
            features = AudioFeatures(
                **{k: feat_cfg[k] for k in FEATURE_KEYS}, input_rate=input_rate,
                channels=channels,
            )
        except ValueError as err:  # bounded before anything is allocated; name the file
            raise ValueError(f"path {where!r}: features header: {err}") from None
        if list(header["labels"]) != list(LABELS):
            raise ValueError(f"path {where!r}: labels must be {list(LABELS)}")
        model = build_model(header["model"], tensors, where)
        decoder = header["decoder"]
        allowed = {*DECODER_DEFAULTS, "flush_ms", "warmup_ms"}
        if not isinstance(decoder, dict) or not set(decoder) <= allowed:
            raise ValueError(f"path {where!r}: decoder settings must be among {sorted(allowed)}")
        return cls(model, features, **decoder)

    def save(self, path, *, info: dict | None = None) -> None:
        """Write the model, the front end's and decoder's settings to ``path`` (atomically).

        ``info`` is free-form JSON provenance (data, training settings) kept in the header.
        The model must be a ``RecurrentModel(LSTM | GRU | RNN | ConvGRU, Readout)``.
        """
        decoder = {k: getattr(self.decoder, k) for k in DECODER_DEFAULTS}
        header = {
            "features": {k: getattr(self.features, k) for k in FEATURE_KEYS},
            "model": self.model.config(),
            "decoder": {**decoder, "flush_ms": self.flush_ms, "warmup_ms": self.warmup_ms},
            "labels": list(LABELS),
            "info": info or {},
        }
        write_file(path, dict(self.model.state_dict()), header)

    # ------------------------------------------------------------------ streaming

    def _warm_state(self):
        """The model state after ``warmup_ms`` of digital silence (the start of a stream)."""
        n = round(self.warmup_ms * self.features.sample_rate / 1000)
        fe = AudioFeatures(**{k: getattr(self.features, k) for k in FEATURE_KEYS})
        feats = fe.offline(np.zeros(n, dtype=np.float32))
        self._stream.reset()
        if len(feats):
            self._stream.push(feats)
        return self._stream.state

    def reset(self) -> None:
        """Start a new stream: front end (with its lead of silence), model state,
        endpointer and decoder."""
        start_stream(self.features)
        self._stream.state = self._warm
        self.endpointer.reset()
        self.decoder.reset()
        self.frames = 0

    def push(self, pcm, sample_rate: int | None = None) -> list[Detection]:
        """Feed one chunk of PCM; return the digits recognised in the frames it completes.

        ``pcm`` is anything :meth:`AudioFeatures.push` takes (float or int arrays, int16
        bytes); a bad chunk raises ``ValueError`` and leaves the stream as it was.
        """
        return self._frames(self.features._push(pcm, sample_rate))  # numpy (T, F)

    def flush(self) -> list[Detection]:
        """End the stream: push ``flush_ms`` of silence, decode the rest, then :meth:`reset`."""
        n = round(self.flush_ms * self.features.input_rate / 1000)
        # int16 zero bytes: silence whatever was pushed before, and they also complete an
        # incomplete sample frame left by a bytes push (which would refuse an array)
        pad = bytes(2 * self.features.in_channels * n)
        found = self._frames(self.features._push(pad, None))
        found += self._frames(self.features.flush().numpy())
        self.reset()
        return found

    def recognize(self, signal, sample_rate: int | None = None) -> list[Detection]:
        """All digits of a whole signal: :meth:`reset`, :meth:`push`, :meth:`flush`.

        The result equals pushing the signal in any chunking.
        """
        self.reset()
        found = self.push(signal, sample_rate=sample_rate)
        return found + self.flush()

    def logits(self, feats) -> np.ndarray:
        """Run frames through the model from the carried state (advances the stream).

        Shape
        -----
        ``(T, F)`` -> ``(T, 11)`` float32.
        """
        return self._model(feats, softmax=False)

    def posteriors(self, feats) -> np.ndarray:
        """:meth:`logits`' softmax over the labels, what the decoder reads (computed in the
        model's call: ``Stream.push(softmax=True)``).

        Shape
        -----
        ``(T, F)`` -> ``(T, 11)`` float32, rows summing to 1.
        """
        return self._model(feats, softmax=True)

    def _model(self, feats, *, softmax: bool) -> np.ndarray:
        if not (type(feats) is torch.Tensor and feats.dtype is torch.float32 and feats.is_cpu):
            x = feats.numpy(force=True) if isinstance(feats, torch.Tensor) else feats
            feats = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return self._stream.push(feats, softmax=softmax).numpy()

    def _frames(self, f: np.ndarray) -> list[Detection]:
        """Model, endpointer and decoder over the frames ``f`` ``(T, F)`` of one push."""
        n = len(f)
        if n == 0:
            return []
        post = self._stream.push(torch.from_numpy(f), softmax=True).numpy()
        energy = frame_energy_db(f, self._ref_db).tolist()
        endpointer, decoder, k = self.endpointer, self.decoder, self.frames
        found = []
        for t in range(n):
            e = energy[t]
            endpointer.update(e)
            last = endpointer.last_voiced
            digit = decoder.update(post[t], frames_since(last, k), e)
            if digit is not None:
                found.append(Detection.at(digit, k, last, *framing(self.features)))
            k += 1
        self.frames = k
        return found


def register_listen(subparsers) -> None:
    """Plug ``streamrnn listen FILE.wav [--json] [--realtime]`` into the command line.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="streamrnn").add_subparsers()
    >>> register_listen(sub)
    """
    import argparse

    parser = subparsers.add_parser(
        "listen",
        add_help=False,
        help="recognise spoken digits in a WAV file as it streams "
        "(streamrnn listen FILE.wav [--json] [--realtime]; listen --help for more)",
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=lambda args: listen_main(args.rest))

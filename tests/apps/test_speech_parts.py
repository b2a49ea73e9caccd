"""Spoken digits, the parts: the model through a Stream, the endpointer, the decoder rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.adapters.audio import AudioFeatures
from streamrnn.apps.speech import DigitRecognizer, word_bounds
from streamrnn.apps.speech._decode import FrameDecoder
from streamrnn.apps.speech._endpoint import Endpointer
from streamrnn.heads import Readout, RecurrentModel

FAST = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _model(layers=2, hidden=16, bias=True, cell=streamrnn.LSTM):
    return RecurrentModel(
        cell(40, hidden, layers, bias=bias, seed=0), Readout(hidden, 11, seed=1)
    ).eval()


# ------------------------------------------------------------------ the model


def test_other_models_run_through_a_stream_with_the_same_result():
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    gru = _model(cell=streamrnn.GRU)
    rec = DigitRecognizer(gru, fe, warmup_ms=0.0)  # start from zeros, as gru(x) does
    feats = torch.randn(30, 40, generator=torch.Generator().manual_seed(0))
    got = np.concatenate([rec.logits(feats[:7]), rec.logits(feats[7:])])
    with torch.no_grad():
        want = gru(feats[None])[0][0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("kind", ["tensor", "numpy float64"])
def test_posteriors_are_the_softmax_of_the_logits_and_advance_the_stream_alike(kind):
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    a, b = DigitRecognizer(_model(), fe), DigitRecognizer(_model(), fe)
    feats = 3 * torch.randn(30, 40, generator=torch.Generator().manual_seed(0))
    feats = feats if kind == "tensor" else feats.double().numpy()
    got = np.concatenate([a.posteriors(feats[:7]), a.posteriors(feats[7:])])
    logits = np.concatenate([b.logits(feats[:12]), b.logits(feats[12:])])
    want = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.logits(feats[:3]), b.logits(feats[:3]), rtol=0, atol=1e-5)


def test_streams_start_from_the_state_after_warmup_silence():
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    model = _model()
    rec = DigitRecognizer(model, fe, warmup_ms=200.0)
    silence = fe.offline(np.zeros(1600, dtype=np.float32))  # 18 frames
    feats = torch.randn(5, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(torch.cat([silence, feats])[None])[0][0, -5:].numpy()
    np.testing.assert_allclose(rec.logits(feats), want, atol=1e-5)
    rec.reset()
    np.testing.assert_allclose(rec.logits(feats), want, atol=1e-5)


def test_weights_are_copied_at_construction():
    model = _model()
    rec = DigitRecognizer(model, AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80))
    feats = np.ones((4, 40), dtype=np.float32)
    before = rec.logits(feats)
    with torch.no_grad():
        model.head.linear.bias.add_(10.0)
    rec.reset()
    np.testing.assert_array_equal(rec.logits(feats), before)


# ------------------------------------------------------------------ endpointing


def test_word_bounds_of_a_tone_in_silence():
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    x = np.zeros(8000, dtype=np.float32)
    x[2000:4000] = 0.3 * np.sin(np.arange(2000) * 0.3)
    start, end = word_bounds(x, fe)
    assert 0.22 <= start <= 0.25 and 0.5 <= end <= 0.53
    assert word_bounds(np.zeros(8000, dtype=np.float32), fe) is None


def test_endpointer_learns_a_steady_noise_floor():
    ep = Endpointer(floor_frames=50)
    voiced = [ep.update(-30.0) for _ in range(120)]  # steady noise at -30 dB
    assert all(voiced[:49]) and not any(voiced[60:])  # above the prefill, then learnt
    assert ep.update(-10.0) and ep.last_voiced == 120  # 20 dB above the floor: voiced
    assert not ep.update(-60.0) and ep.floor_db == -60.0


def test_endpointer_hears_speech_from_the_first_frame():
    ep = Endpointer()
    assert ep.update(-20.0) and ep.last_voiced == 0
    with pytest.raises(ValueError, match="margin_db must be a finite number > 0, got 0"):
        Endpointer(margin_db=0)
    with pytest.raises(ValueError, match="floor_frames must be a positive int"):
        Endpointer(floor_frames=0)


# ------------------------------------------------------------------ the decoder rule


def _post(digit_p, digit=3, blank_p=None):
    p = np.zeros(11)
    p[digit] = digit_p
    p[10] = 1 - digit_p if blank_p is None else blank_p
    return p


def _decoder(**kw):
    cfg = {"threshold": 0.5, "min_frames": 3, "release_frames": 4, "voice_frames": 50}
    return FrameDecoder(**{**cfg, "min_range_db": 10.0, **kw})


def _run(dec, seq, since_voice=0, word_db=-20.0, blank_db=-50.0):
    """Feed posteriors; word frames (blank < 0.5) at word_db, others at blank_db."""
    return [dec.update(p, since_voice, word_db if p[10] < 0.5 else blank_db) for p in seq]


def test_decoder_emits_once_per_word_after_release_frames():
    out = _run(_decoder(), [_post(0.9)] * 5 + [_post(0.0)] * 6)
    assert [(i, d) for i, d in enumerate(out) if d is not None] == [(5 + 3, 3)]


def test_decoder_votes_over_the_word():
    seq = [_post(0.6, digit=6)] * 2 + [_post(0.9, digit=7)] * 4 + [_post(0.0)] * 4
    assert [d for d in _run(_decoder(), seq) if d is not None] == [7]


def test_decoder_short_blank_gaps_do_not_split_a_word():
    seq = [_post(0.9)] * 3 + [_post(0.0)] * 3 + [_post(0.9)] * 3 + [_post(0.0)] * 4
    assert [d for d in _run(_decoder(), seq) if d is not None] == [3]


def test_decoder_decay_lets_the_end_of_the_word_decide():
    # 4 frames say 6, then 3 say 7: the plain vote (decay 1) sums 3.6 against 2.4; with
    # decay 0.5 the last frames weigh most: 6 gets 0.9 (1/8 + 1/16 + 1/32 + 1/64), 7 gets
    # 0.8 (1 + 1/2 + 1/4)
    seq = [_post(0.9, digit=6)] * 4 + [_post(0.8, digit=7)] * 3 + [_post(0.0)] * 4
    assert [d for d in _run(_decoder(decay=1.0), seq) if d is not None] == [6]
    assert [d for d in _run(_decoder(decay=0.5), seq) if d is not None] == [7]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.floats(0.51, 1.0)), min_size=3, max_size=12),
    st.floats(0.05, 1.0),
    st.floats(0.1, 0.9),
)
def test_decoder_emits_the_argmax_of_the_decayed_vote(frames, decay, threshold):
    # the reference: weights decay ** (frames after this one), threshold on the weighted mean
    seq = [_post(p, digit=d) for d, p in frames] + [_post(0.0)] * 4
    w = decay ** np.arange(len(frames) - 1, -1, -1)
    votes = sum(wi * _post(p, digit=d)[:10] for wi, (d, p) in zip(w, frames, strict=True))
    best = int(np.argmax(votes))
    want = [best] if votes[best] / w.sum() >= threshold - 1e-12 else []
    got = [d for d in _run(_decoder(decay=decay, threshold=threshold), seq) if d is not None]
    if abs(votes[best] / w.sum() - threshold) > 1e-9:  # not on the threshold's edge
        assert got == want


@pytest.mark.parametrize(
    "frames, p, since_voice, blank_db",
    [
        (2, 0.9, 0, -50.0),  # too short
        (6, 0.45, 0, -50.0),  # unsure
        (6, 0.9, 100, -50.0),  # no voiced frame heard lately
        (6, 0.9, 0, -25.0),  # flat energy: a noise that switched on, not a word
    ],
)
def test_decoder_stays_quiet(frames, p, since_voice, blank_db):
    seq = [_post(p, blank_p=0.1)] * frames + [_post(0.0)] * 5
    assert all(d is None for d in _run(_decoder(), seq, since_voice, blank_db=blank_db))

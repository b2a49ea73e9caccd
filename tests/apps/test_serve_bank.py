"""DigitBank: a stream in the bank gets what a DigitRecognizer gives it alone (batch
invariance of detections and posteriors), whatever the chunking and the other streams;
per-stream errors, flush, close and capacity.

Expected digits come from the recogniser run alone on the same signal (the reference),
and for the demo also from its clip list (FSDD file names), never from the bank itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
from _data import demo_digits

from streamrnn.adapters.audio import WavSource
from streamrnn.apps.speech import DigitBank, DigitRecognizer, demo_path, lead_samples

# shared/ lies beside the clone (CI, /work/main) or above the worktrees' folder
_HERE = Path(__file__).resolve()
FSDD = next(
    (p for p in (_HERE.parents[3] / "shared", _HERE.parents[4] / "shared") if p.is_dir()),
    _HERE.parents[3] / "shared",
) / "data" / "fsdd"


def _fsdd_sentence(names: list[str], pause_s: float = 0.35) -> np.ndarray:
    if not FSDD.exists():
        pytest.fail(f"{FSDD} is absent (see shared/data/README.md)")
    gap = np.zeros(int(pause_s * 8000), dtype=np.float32)
    parts = [gap]
    for name in names:
        parts += [WavSource(str(FSDD / name)).read(), gap]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def signals():
    demo = WavSource(demo_path()).read()
    words = ["3_jackson_5.wav", "8_nicolas_7.wav", "1_lucas_12.wav", "6_yweweler_3.wav"]
    rng = np.random.default_rng(0)
    noise = (0.01 * rng.standard_normal(12000)).astype(np.float32)
    return {
        "demo": (demo, 8000),
        "demo16k": (soxr.resample(demo, 8000, 16000).astype(np.float32), 16000),
        "fsdd": (_fsdd_sentence(words), 8000),
        "noise": (noise, 8000),
        "demo_digits": demo_digits(),
    }


def _alone(x: np.ndarray, rate: int):
    """The reference: a recogniser on its own (detections), and the posteriors of the
    offline features (of the stream after its lead of silence) from its warm start."""
    rec = DigitRecognizer.load(input_rate=rate)
    found = rec.recognize(x)
    rec.reset()
    lead = np.zeros(round(lead_samples(rec.features) * rate / 8000), np.float32)
    feats = rec.features.offline(np.concatenate([lead, x])).numpy()
    logits = rec.logits(feats)
    post = np.exp(logits - logits.max(1, keepdims=True))
    return found, post / post.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_each_stream_gets_what_it_gets_alone(signals, seed):
    rng = np.random.default_rng(seed)
    names = ["demo", "demo16k", "fsdd", "noise"]
    bank = DigitBank.load(max_streams=8)
    for name in names:
        bank.open(name, input_rate=signals[name][1])
    pos = dict.fromkeys(names, 0)
    found = {n: [] for n in names}
    posts = {n: [] for n in names}
    while any(pos[n] < len(signals[n][0]) for n in names):
        chunks = {}
        for n in names:  # a random subset of streams, each with a random chunk size
            x = signals[n][0]
            if pos[n] < len(x) and rng.random() < 0.7:
                size = int(rng.choice([0, 1, 37, 160, 320, 801, 2000]))
                chunks[n] = x[pos[n] : pos[n] + size]
                pos[n] += size
        for key, res in bank.push(chunks).items():
            assert res.first_frame == sum(map(len, posts[key]))
            found[key] += res.detections
            posts[key].append(res.posteriors)
    for n in names:
        found[n] += bank.flush(n).detections
        ref_found, ref_post = _alone(*signals[n])
        assert found[n] == ref_found, n  # digit, time and latency
        got = np.concatenate(posts[n])  # a resampler holds its last ms back until flush
        assert len(ref_post) - 12 <= len(got) <= len(ref_post), n
        np.testing.assert_allclose(got, ref_post[: len(got)], atol=2e-4)
    assert [d.digit for d in found["demo"]] == signals["demo_digits"]
    assert len(found["fsdd"]) >= 2  # the comparison above is not vacuous
    assert found["noise"] == []


def test_bad_chunk_changes_nothing_and_no_other_stream(signals):
    x = signals["demo"][0]
    bank = DigitBank.load(max_streams=4)
    bank.open("bad")
    bank.open("good")
    bank.push({"bad": x[:4000], "good": x[:4000]})
    frames = bank.frames("bad")
    poisoned = x[4000:4160].copy()
    poisoned[7] = np.nan
    with pytest.raises(ValueError, match="'bad'.*non-finite"):
        bank.push({"good": x[4000:4160], "bad": poisoned})
    with pytest.raises(ValueError):
        bank.accept("bad", poisoned)
    assert bank.frames("bad") == frames and bank.frames("good") == frames
    out = bank.push({"bad": x[4000:], "good": x[4000:]})
    np.testing.assert_array_equal(out["bad"].posteriors, out["good"].posteriors)
    assert bank.flush("bad").detections == bank.flush("good").detections


def test_flush_starts_the_stream_over_and_close_forgets_it(signals):
    x, _ = signals["demo"]
    bank = DigitBank.load(max_streams=2)
    bank.open("a")
    first = bank.push({"a": x})["a"].detections + bank.flush("a").detections
    assert bank.frames("a") == 0
    again = bank.push({"a": x})["a"].detections + bank.flush("a").detections
    assert first == again and [d.digit for d in first] == signals["demo_digits"]
    bank.open("b")
    with pytest.raises(ValueError, match="max_streams = 2"):
        bank.open("c")
    with pytest.raises(ValueError, match="open already"):
        bank.open("b")
    bank.close("a")
    assert "a" not in bank and len(bank) == 1
    with pytest.raises(ValueError, match="input_rate"):
        bank.open("c", input_rate=0)
    bank.open("c", input_rate=44100)
    assert bank.input_rate("c") == 44100 and bank.keys() == ["b", "c"]


def test_one_step_is_one_batched_bank_call(signals, monkeypatch):
    x, _ = signals["demo"]
    bank = DigitBank.load(max_streams=64)
    keys = [f"s{i}" for i in range(40)]
    for k in keys:
        bank.open(k)
    calls = []
    push = bank._bank.push
    monkeypatch.setattr(bank._bank, "push", lambda chunks: calls.append(len(chunks)) or push(
        chunks))
    for start in range(0, 8000, 160):  # every stream 20 ms per step, at its own offset
        out = bank.push({k: x[start + 40 * i : start + 40 * i + 160] for i, k in
                         enumerate(keys)})
    assert calls == [40] * (len(calls)) and len(calls) >= 48
    assert len(out) == 40

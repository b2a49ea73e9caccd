"""The digit recogniser's training recipe (``examples/train_digits.py``, ``digits_data.py``):
the folded front end is exact, augmentation keeps the word labels on the word, the
command line refuses bad settings.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchaudio.functional import create_dct

import streamrnn
from streamrnn import ConvGRU
from streamrnn.adapters.audio import AudioFeatures
from streamrnn.apps.speech import word_bounds
from streamrnn.heads import Readout, RecurrentModel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def scripts():
    """``train_digits`` and ``digits_data``, imported as the script imports them."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module("train_digits"), importlib.import_module("digits_data")
    finally:
        sys.path.remove(str(EXAMPLES))


def _tone_clip(digit: int = 3) -> dict:
    """A 1 s clip: silence, a 0.3 s voiced-like burst at 0.4-0.7 s, silence."""
    t = np.arange(8000) / 8000
    x = np.zeros(8000)
    burst = (t >= 0.4) & (t < 0.7)
    x[burst] = 0.2 * np.sin(2 * np.pi * 300 * t[burst]) + 0.1 * np.sin(2 * np.pi * 1200 * t[burst])
    audio = x.astype(np.float32)
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80, f_min=100.0)
    return {"audio": audio, "bounds": word_bounds(audio, fe), "digit": digit, "speaker": "a"}


# ------------------------------------------------------------------ the folded front end


@pytest.mark.parametrize("cell", [streamrnn.LSTM, streamrnn.GRU])
@pytest.mark.parametrize("cepstra", [0, 13])
def test_folded_model_on_raw_logmel_equals_the_trained_model(scripts, cell, cepstra):
    """Standardisation and the cepstral projection are folded into the first layer: the
    shipped model on raw log-mel computes what the trained one did on its inputs."""
    td, _ = scripts
    gen = torch.Generator().manual_seed(0)
    proj = create_dct(cepstra, 40, "ortho").T.contiguous() if cepstra else None
    model = RecurrentModel(cell(cepstra or 40, 16, 2, seed=0), Readout(16, 11, seed=1)).eval()
    mean, std = torch.randn(40, generator=gen) - 5.0, torch.rand(40, generator=gen) + 0.5
    x = torch.randn(3, 25, 40, generator=gen) * 2.0 - 5.0
    z = (x - mean) / std
    with torch.no_grad():
        want = model(z @ proj.T if cepstra else z)[0]
        folded = td.fold_front(model, mean, std, proj)
        got = folded(x)[0]
    assert folded.input_size == 40 and type(folded.cell) is cell
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_folded_conv_model_on_raw_logmel_equals_the_trained_model(scripts):
    """A ConvGRU keeps the standardisation as its own step: folded, on raw log-mel, it
    computes what the trained model did on standardised input."""
    td, _ = scripts
    gen = torch.Generator().manual_seed(0)
    model = RecurrentModel(ConvGRU(40, 16, channels=4, seed=0), Readout(16, 11, seed=1))
    mean, std = torch.randn(40, generator=gen) - 5.0, torch.rand(40, generator=gen) + 0.5
    x = torch.randn(3, 25, 40, generator=gen) * 2.0 - 5.0
    with torch.no_grad():
        want = model.eval()((x - mean) / std)[0]
        folded = td.fold_front(model, mean, std, None)
        got = folded(x)[0]
    assert type(folded.cell) is ConvGRU and folded.cell.channels == 4
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ augmentation and labels


@pytest.mark.parametrize("speed, tempo", [(1.0, 1.0), (0.85, 1.0), (1.15, 1.0), (1.0, 0.8),
                                          (1.1, 1.2)])  # fmt: skip
def test_speed_and_tempo_move_the_word_bounds_with_the_word(scripts, speed, tempo):
    """The labels follow the audio: the scaled bounds are where endpointing finds the word
    in the perturbed clip (to a frame or two)."""
    _, dd = scripts
    clip = _tone_clip()
    audio, (start, end) = dd.at_speed(clip, speed, tempo)
    rate = round(8000 * speed) / 8000
    assert len(audio) == pytest.approx(len(clip["audio"]) / rate / tempo, abs=2)
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80, f_min=100.0)
    found = word_bounds(audio.astype(np.float32), fe)
    assert found[0] == pytest.approx(start, abs=0.025)
    assert found[1] == pytest.approx(end, abs=0.025)


def test_tempo_keeps_the_pitch(scripts):
    _, dd = scripts
    t = np.arange(8000) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    for tempo in (0.8, 1.25):
        y = dd.stretch(tone, tempo)
        assert len(y) == round(8000 / tempo)
        mid = y[len(y) // 4 : 3 * len(y) // 4]  # away from the edges
        peak = np.fft.rfftfreq(len(mid), 1 / 8000)[np.argmax(np.abs(np.fft.rfft(mid)))]
        assert abs(peak - 500) <= 8000 / len(mid)  # the FFT bin width


@pytest.mark.parametrize("hang", [None, 0.0, 0.15])
def test_frame_labels_mark_the_word_and_its_speaker(scripts, hang):
    """The digit from 40 % into the word to ``hang_s`` after it (default 50 ms)."""
    _, dd = scripts
    hop, win, sr = 80, 200, 8000
    start, end = 2000.0, 4000.0  # samples
    kw = {} if hang is None else {"hang_s": hang}
    y, who = dd.frame_labels(100, [(start, end, 7, "b")], speakers=["a", "b"], **kw)
    centres = np.arange(100) * hop + win / 2
    word = (centres >= start) & (centres <= end + (0.05 if hang is None else hang) * sr)
    late = word & (centres >= start + 0.4 * (end - start))
    assert (y[late] == 7).all() and (y[word & ~late] == -100).all()
    assert (y[~word] == dd.BLANK).all()
    assert (who[word] == 1).all() and (who[~word] == -100).all()


@pytest.mark.parametrize("onset_blank", [0.0, 0.2, 0.4])
def test_onset_blank_labels_the_word_start_blank_and_keeps_the_rest(scripts, onset_blank):
    _, dd = scripts
    start, end = 2000.0, 4000.0
    y0, _ = dd.frame_labels(100, [(start, end, 7, "b")])
    y, _ = dd.frame_labels(100, [(start, end, 7, "b")], onset_blank=onset_blank)
    centres = np.arange(100) * 80 + 100
    onset = (centres >= start) & (centres < start + onset_blank * (end - start))
    assert (y[onset] == dd.BLANK).all() and (y0[onset] == -100).all()
    np.testing.assert_array_equal(y[~onset], y0[~onset])
    with pytest.raises(ValueError, match="onset_blank must be in"):
        dd.frame_labels(100, [(start, end, 7, "b")], onset_blank=0.5)


def test_compose_labels_only_digits_it_placed(scripts):
    _, dd = scripts
    clips = [_tone_clip(d) for d in (1, 2, 3, 4)]
    aug = dd.Augment(speed=(0.9, 1.1), tempo=(0.9, 1.1), babble=0.5)
    seqs = dd.compose(clips, [0, 1, 2, 3], np.random.default_rng(0), aug)
    placed = [e for _, events in seqs for e in events]
    assert sorted(e[2] for e in placed) == [1, 2, 3, 4]  # each clip once
    for x, events in seqs:
        assert len(x) == round(dd.SEQ_S * dd.SR) and np.isfinite(x).all()
        for start, end, _, _ in events:
            assert 0 <= start < end <= len(x)


def test_spec_augment_masks_whole_bands_and_frames_and_is_seeded(scripts):
    _, dd = scripts
    x = torch.ones(8, 300, 40)
    freq = dd.Augment(freq_masks=2, freq_mask=5, time_masks=0.0, time_mask=0)
    a, b = x.clone(), x.clone()
    dd.spec_augment(a, freq, torch.Generator().manual_seed(3))
    dd.spec_augment(b, freq, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    for row in a:  # zeros (the training mean) fill whole bands, at most 2 x 5 of them
        bands = (row == 0).all(0)
        assert torch.equal(row == 0, bands.expand_as(row)) and bands.sum() <= 10
    assert (a == 0).any()
    time = dd.Augment(freq_masks=0, freq_mask=0, time_masks=2.0, time_mask=10)
    dd.spec_augment(x, time, torch.Generator().manual_seed(3))
    for row in x:  # zeros fill whole frames
        frames = (row == 0).all(1)
        assert torch.equal(row == 0, frames[:, None].expand_as(row))
    assert (x == 0).any()


@pytest.mark.parametrize("alpha", [0.8, 0.9, 1.0, 1.1, 1.25])
def test_vtlp_matrix_keeps_the_end_bands_and_moves_the_envelope_with_alpha(scripts, alpha):
    """alpha = 1 is the identity; band 0 and the top band are kept; each output band is a
    convex mix of two neighbouring input bands; a formant-like peak moves up for alpha > 1
    and down for alpha < 1."""
    _, dd = scripts
    centres = dd.mel_centres()
    assert centres.shape == (40,) and (np.diff(centres) > 0).all()
    assert 100 < centres[0] < centres[-1] < 4000
    m = dd.vtlp_matrix(alpha, centres)
    assert m.shape == (40, 40) and (m >= 0).all()
    np.testing.assert_allclose(m.sum(1), 1.0)
    assert ((m > 0).sum(1) <= 2).all()
    assert m[0, 0] == 1.0 and m[-1, -1] == 1.0
    if alpha == 1.0:
        np.testing.assert_array_equal(m, np.eye(40))
    peak = np.exp(-0.5 * ((np.arange(40) - 15) / 2.0) ** 2)
    moved = int(np.argmax(m @ peak))
    assert (moved > 15) if alpha > 1 else (moved < 15) if alpha < 1 else moved == 15


def test_vtlp_warps_each_clip_on_its_own_and_is_off_by_default(scripts):
    _, dd = scripts
    x = torch.randn(3, 300, 40, generator=torch.Generator().manual_seed(0))
    seqs = [(None, [(2000.0, 6000.0, 1, "a"), (14000.0, 18000.0, 2, "b")]), (None, []),
            (None, [(8000.0, 12000.0, 3, "a")])]  # fmt: skip
    rng = np.random.default_rng(0)
    off = x.clone()
    dd.vtlp(off, seqs, dd.Augment(), rng)  # the default: nothing, no draw
    assert torch.equal(off, x) and rng.random() == np.random.default_rng(0).random()
    aug = dd.Augment(vtlp=(0.9, 1.1))
    a, b = x.clone(), x.clone()
    dd.vtlp(a, seqs, aug, np.random.default_rng(1))
    dd.vtlp(b, seqs, aug, np.random.default_rng(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.equal(a[..., [0, -1]], x[..., [0, -1]])  # band 0 and the top band kept
    centres = dd.mel_centres()

    def alpha_of(row, t):  # the factor that maps x's frame t to a's
        grid = np.linspace(0.9, 1.1, 2001)
        err = [float((torch.from_numpy(dd.vtlp_matrix(g, centres)).float() @ x[row, t]
                      - a[row, t]).abs().max()) for g in grid]  # fmt: skip
        return grid[int(np.argmin(err))]

    # the cut between the two clips of sequence 0: half-way between the words (10000 samples)
    first, second = alpha_of(0, 30), alpha_of(0, 200)
    assert first != pytest.approx(second, abs=1e-3)
    assert alpha_of(0, 0) == pytest.approx(first, abs=1e-3)
    assert alpha_of(0, 120) == pytest.approx(first, abs=1e-3)  # centre 9700 < 10000
    assert alpha_of(0, 125) == pytest.approx(second, abs=1e-3)  # centre 10100 > 10000
    assert alpha_of(1, 0) == pytest.approx(alpha_of(1, 299), abs=1e-3)  # one factor


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"speed": (1.2, 0.9)}, "speed must be"),
        ({"tempo": (0.3, 1.0)}, "tempo must be"),
        ({"tilt_db": -1.0}, "tilt_db must be"),
        ({"babble": 1.5}, "babble must be"),
        ({"freq_mask": 50}, "freq_mask must be"),
        ({"vtlp": (1.1, 0.9)}, "vtlp must be"),
        ({"vtlp": (0.5, 1.0)}, "vtlp must be"),
    ],
)
def test_augment_refuses_bad_settings(scripts, kw, match):
    _, dd = scripts
    with pytest.raises(ValueError, match=match):
        dd.Augment(**kw)


@pytest.mark.parametrize(
    "argv, match",
    [
        ([], "choose --folds"),
        (["--folds", "--layers", "4"], "--layers must be in"),
        (["--folds", "--cepstra", "41"], "--cepstra must be in"),
        (["--final", "--seeds", "0", "1"], "--final trains one model"),
        (["--folds", "--speed", "2", "1"], "speed must be"),
        (["--folds", "--smooth", "1"], "--smooth must be"),
        (["--folds", "--ema", "-0.1"], "--ema must be"),
        (["--folds", "--vtlp", "0.9", "1.5"], "vtlp must be"),
        (["--folds", "--onset-blank", "0.5"], "--onset-blank must be"),
        (["--folds", "--conv", "-1"], "--conv must be"),
        (["--folds", "--conv-pool", "3"], "--conv-pool must divide the 40 mel bands"),
        (["--folds", "--conv", "16"], "it needs --cell gru --layers 1 --cepstra 0"),
        (["--folds", "--conv", "16", "--cepstra", "0", "--cell", "lstm"], "it needs --cell gru"),
        (["--folds", "--conv", "16", "--cepstra", "0", "--adversary", "1"], "not with --conv"),
        (["--folds", "--hang", "0.6"], "--hang must be in"),
        (["--folds", "--distill", "0.5"], "--distill must be in (0, 1] with --teachers"),
        (["--folds", "--teachers", "x"], "--distill must be in (0, 1] with --teachers"),
        (["--folds", "--teachers", "x", "--distill", "1.5"], "--distill must be in"),
    ],
)
def test_command_line_refuses_bad_settings(scripts, capsys, argv, match):
    td, _ = scripts
    with pytest.raises(SystemExit) as exc:
        td.parse_args(argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


# ------------------------------------------------------------------ distillation


def _tiny_args(td, distill: float):
    argv = ["--folds", "--conv", "2", "--cepstra", "0", "--hidden", "8", "--epochs", "1"]
    args = td.parse_args(argv)
    args.distill = distill  # the teachers are handed to train() directly
    return args


def _teacher(seed: int) -> RecurrentModel:
    return RecurrentModel(ConvGRU(40, 6, channels=2, seed=seed), Readout(6, 11, seed=seed)).eval()


@pytest.mark.parametrize("distill, same", [(1.0, True), (0.5, False)])
def test_distillation_at_weight_one_learns_from_the_teachers_alone(scripts, distill, same):
    """With ``--distill 1`` the frame loss is the teachers' KL alone: relabelling every
    clip changes nothing, bit for bit; at 0.5 the labels count."""
    td, _ = scripts
    base = [_tone_clip(3) for _ in range(4)]
    relabelled = [{**c, "digit": 5} for c in base]
    teachers = [_teacher(0), _teacher(1)]
    quiet = lambda *a: None  # noqa: E731
    a = td.train(base, _tiny_args(td, distill), 0, log=quiet, teachers=teachers)
    b = td.train(relabelled, _tiny_args(td, distill), 0, log=quiet, teachers=teachers)
    equal = all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert equal is same


def test_teachers_hear_raw_log_mel_and_vote_with_their_mean_logits(scripts):
    """The student trains on standardised frames; its teachers take raw log-mel."""
    td, _ = scripts
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(3, 20, 40, generator=gen) * 2.0 - 6.0
    mean, std = torch.randn(40, generator=gen) - 6.0, torch.rand(40, generator=gen) + 0.5
    teachers = [_teacher(0), _teacher(1), _teacher(2)]
    got = td.teacher_targets(teachers, (raw - mean) / std, mean, std)
    with torch.no_grad():
        probs = [torch.softmax(t(raw)[0], -1) for t in teachers]
        logits = sum(t(raw)[0] for t in teachers) / 3
    torch.testing.assert_close(got.exp(), torch.softmax(logits, -1), atol=1e-5, rtol=1e-4)
    assert got.shape == (3, 20, 11) and not torch.allclose(got.exp(), probs[0], atol=1e-3)


def test_teachers_of_picks_the_fold_s_models_from_every_folder(scripts, tmp_path):
    """A fold's teachers are the models that never heard its held-out speaker."""
    td, _ = scripts
    from streamrnn.apps.speech import DigitRecognizer

    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80, f_min=100.0)
    names = {"one": ["digits_without_george_seed0", "digits_without_lucas_seed0"],
             "two": ["digits_without_george_seed1", "digits_seed0"]}  # fmt: skip
    for folder, stems in names.items():
        (tmp_path / folder).mkdir()
        for i, stem in enumerate(stems):
            info = {"training": {"seed": i, "folder": folder}}
            DigitRecognizer(_teacher(i), fe).save(tmp_path / folder / f"{stem}.safetensors",
                                                  info=info)  # fmt: skip
    args = _tiny_args(td, 1.0)
    args.teachers = [tmp_path / "one", tmp_path / "two"]
    assert len(td.teachers_of(args, "george")) == 2
    assert len(td.teachers_of(args, "lucas")) == 1 and len(td.teachers_of(args, None)) == 1
    (final,) = td.teacher_files(args, None)  # its provenance goes into the student's header
    assert final.name == "digits_seed0.safetensors"
    assert td.training_info(final) == {"training": {"seed": 1, "folder": "two"}}
    with pytest.raises(SystemExit, match="no digits_without_jackson_seed"):
        td.teachers_of(args, "jackson")
    args.teachers = []
    assert td.teachers_of(args, "george") == []

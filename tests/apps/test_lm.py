"""streamrnn.apps.lm, grouped by property.

- learning: a tiny ``train-lm`` run lowers the validation and training loss;
- exactness: resume from a checkpoint == a run that never stopped (weights, optimizer
  state, stream states: bit for bit); a prompt pushed in one fused pass == the same
  prompt pushed character by character; seeded generation is deterministic;
- bad input: invalid UTF-8 (replaced and counted, or refused by policy), empty pushes,
  characters outside the vocabulary (counted as unknown), a checkpoint whose vocabulary
  does not match (an error naming both), bad settings;
- the command line: ``register_train_lm`` / ``register_generate`` on a parser of our own.

Every model here is tiny and every run a few hundred steps on one thread.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from streamrnn.adapters.tokens import ByteCodec, CharCodec
from streamrnn.apps.lm import (
    CharLM,
    LMTrainer,
    build_model,
    generate_main,
    read_checkpoint,
    register_generate,
    register_train_lm,
    train_lm_main,
)

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
        "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than "
        "to famish?\n\nAll:\nResolved. resolved.\n\n") * 12
TINY = ["--hidden", "24", "--layers", "1", "--emb", "8", "--batch", "4", "--k1", "12",
        "--lr", "0.01", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    return path


def _summary(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _tensors(path) -> dict:
    return read_checkpoint(path)[0]


# -- learning ---------------------------------------------------------------------------
def test_tiny_train_lm_run_reduces_loss(text_file, tmp_path, capsys):
    trainer = LMTrainer(text_file, hidden=24, layers=1, emb=8, batch=4, k1=12, lr=0.01)
    untrained = trainer.evaluate()
    assert abs(untrained - math.log(trainer.codec.vocab_size)) < 0.5
    assert train_lm_main([str(text_file), "--steps", "600", "--json", *TINY]) == 0
    out = _summary(capsys)
    assert out["val_loss"] < untrained - 1.0
    assert out["train_loss"] < untrained - 0.5
    assert out["tokens"] == 600 * 4 and out["invalid_sequences"] == 0


# -- exactness --------------------------------------------------------------------------
@pytest.mark.parametrize("first", [120, 131])  # a window end, and inside one (-> 132)
def test_resume_equals_uninterrupted(text_file, tmp_path, capsys, first):
    whole, split = tmp_path / "whole.safetensors", tmp_path / "split.safetensors"
    assert train_lm_main([str(text_file), "--steps", "300", "--checkpoint", str(whole),
                          *TINY]) == 0
    assert train_lm_main([str(text_file), "--steps", str(first), "--checkpoint", str(split),
                          *TINY]) == 0
    assert train_lm_main([str(text_file), "--steps", "300", "--checkpoint", str(split),
                          "--resume", "--no-progress", "--threads", "1"]) == 0
    capsys.readouterr()
    a, b = _tensors(whole), _tensors(split)
    assert set(a) == set(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    meta_a, meta_b = read_checkpoint(whole)[2], read_checkpoint(split)[2]
    assert meta_a["progress"]["steps"] == meta_b["progress"]["steps"] == 300
    assert meta_a["progress"]["running_loss"] == meta_b["progress"]["running_loss"]


def test_resume_api_equals_uninterrupted(tmp_path):
    kw = dict(hidden=16, layers=2, emb=8, batch=3, k1=5, k2=15, lr=0.01, seed=3)
    a = LMTrainer(TEXT, **kw)
    a.train(steps=77)
    b = LMTrainer(TEXT, **kw)
    b.train(steps=33, checkpoint=tmp_path / "ck")
    assert b.steps == 35  # training stops at window ends (k1 = 5)
    c = LMTrainer.resume(tmp_path / "ck", TEXT)
    c.train(steps=77)
    assert a.steps == c.steps == 80
    for p, q in zip(a.model.parameters(), c.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert a.running_loss == c.running_loss


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_prompt_in_one_pass_equals_char_by_char(dtype, tol):
    codec = CharCodec(TEXT)
    model = build_model(codec.vocab_size, emb=8, hidden=16, layers=2, seed=0).to(dtype)
    prompt = "First Citizen:\nYou are all resolved"
    fused, stepped = CharLM(model, codec), CharLM(model, codec)
    logits = fused.push(prompt)
    per_char = torch.cat([stepped.push(ch) for ch in prompt])
    assert logits.shape == (len(prompt), codec.vocab_size)
    torch.testing.assert_close(per_char, logits, atol=tol, rtol=0)
    torch.testing.assert_close(stepped.state.h, fused.state.h, atol=tol, rtol=0)
    torch.testing.assert_close(stepped.state.c, fused.state.c, atol=tol, rtol=0)
    assert fused.steps == stepped.steps == len(prompt)


def test_bytes_split_inside_a_character_are_held():
    codec = CharCodec("café ")
    lm = CharLM(build_model(codec.vocab_size, emb=4, hidden=8, layers=1), codec)
    whole = CharLM(lm.model, codec).push("café")
    raw = "café".encode()
    parts = [lm.push(raw[:4]), lm.push(raw[4:])]  # "caf" + first byte of "é", then the rest
    assert [p.shape[0] for p in parts] == [3, 1]
    torch.testing.assert_close(torch.cat(parts), whole)


@pytest.fixture()
def checkpoint(text_file, tmp_path, capsys):
    path = tmp_path / "lm.safetensors"
    assert train_lm_main([str(text_file), "--steps", "200", "--checkpoint", str(path),
                          *TINY]) == 0
    capsys.readouterr()
    return path


def test_generate_with_seed_is_deterministic_and_valid(checkpoint, capsys):
    args = ["--checkpoint", str(checkpoint), "--prompt", "First Citizen:\n", "--chars", "80",
            "--temperature", "0.8", "--top-k", "10", "--seed", "7"]
    assert generate_main(args) == 0
    one = capsys.readouterr().out
    assert generate_main(args) == 0
    two = capsys.readouterr().out
    assert one == two and one.endswith("\n")
    sampled = one[:-1]
    assert len(sampled) == 80 and set(sampled) <= set(CharCodec(TEXT).alphabet)
    assert generate_main([*args[:-1], "8"]) == 0
    assert capsys.readouterr().out != one


def test_generate_matches_the_api_and_top_k_one_is_greedy(checkpoint, capsys):
    lm = CharLM.from_checkpoint(checkpoint)
    lm.push("All:\n")
    expected = lm.generate(30, top_k=1, seed=0)
    greedy = CharLM.from_checkpoint(checkpoint)
    logits = greedy.push("All:\n")[-1]
    ids = []
    for _ in range(30):
        ids.append(int(logits.argmax()))
        logits = greedy.push_ids([ids[-1]])[-1]
    assert expected == greedy.codec.decode(ids)
    assert generate_main(["--checkpoint", str(checkpoint), "--prompt", "All:\n", "--chars",
                          "30", "--top-k", "1", "--seed", "5"]) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_sampling_leaves_the_stream_where_the_text_is():
    codec = CharCodec(TEXT)
    model = build_model(codec.vocab_size, emb=8, hidden=16, layers=1, seed=0)
    lm = CharLM(model, codec)
    lm.push("All:")
    text = lm.generate(10, seed=1)
    replay = CharLM(model, codec)
    replay.push("All:" + text)
    torch.testing.assert_close(replay.state.h, lm.state.h, atol=1e-5, rtol=0)


def test_byte_codec_generation_never_splits_a_character():
    codec = ByteCodec()
    model = build_model(256, emb=8, hidden=16, layers=1, seed=0)
    lm = CharLM(model, codec)
    lm.push("é")
    pieces = list(lm.sample(200, seed=0)) + [lm.flush()]
    gen = torch.Generator().manual_seed(0)  # replay the draws to get the ids
    replay, ids = CharLM(model, codec), []
    logits = replay.push("é")[-1]
    from streamrnn.apps.lm._model import draw

    for _ in range(200):
        ids.append(draw(logits, 1.0, None, gen))
        logits = replay.push_ids(ids[-1:])[-1]
    assert "".join(pieces) == codec.decode(ids)


# -- bad input --------------------------------------------------------------------------
def test_invalid_utf8_is_replaced_and_counted(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_bytes(TEXT.encode()[:1500] + b"\xff\xfe" + TEXT.encode()[1500:] + b"\xc3")
    assert train_lm_main([str(path), "--steps", "24", "--json", *TINY]) == 0
    out = _summary(capsys)
    assert out["invalid_sequences"] == 3  # ff, fe, and the truncated c3 at the end
    assert train_lm_main([str(path), "--steps", "24", "--errors", "strict", *TINY]) == 2
    err = capsys.readouterr().err
    assert "invalid UTF-8 at byte 1500" in err and "bad.txt" in err


def test_unknown_characters_are_counted():
    trainer = LMTrainer(TEXT + "QX~#", hidden=8, layers=1, emb=4, batch=2, k1=4,
                        holdout=0.01)
    assert trainer.counts["unknown"] == 4  # none of "QX~#" is in the training part
    lm = trainer.lm()
    assert lm.push("Speak, Q~!").shape[0] == 10
    assert lm.counts["unknown"] == 3  # "Q", "~", "!"


def test_empty_pushes_change_nothing():
    codec = CharCodec(TEXT)
    lm = CharLM(build_model(codec.vocab_size, emb=4, hidden=8, layers=1), codec)
    lm.push("All")
    h = lm.state.h.clone()
    for empty in ("", b"", []):
        out = lm.push_ids(empty) if isinstance(empty, list) else lm.push(empty)
        assert out.shape == (0, codec.vocab_size)
    assert torch.equal(lm.state.h, h) and lm.steps == 3
    assert lm.counts["empty_pushes"] == 2


def test_vocabulary_mismatch_names_both(checkpoint, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text(TEXT.replace("p", "P"))  # same size, "p" swapped for "P"
    status = train_lm_main([str(other), "--steps", "300", "--checkpoint", str(checkpoint),
                            "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert "vocabulary mismatch" in err and str(checkpoint) in err and "other.txt" in err
    assert "only in checkpoint" in err and "'p'" in err and "'P'" in err
    with pytest.raises(ValueError, match=r"vocabulary mismatch: checkpoint .* has a 'char' "
                                         r"vocabulary of \d+ symbols, the given codec has a "
                                         r"'byte' vocabulary of 256"):
        CharLM.from_checkpoint(checkpoint, codec=ByteCodec())


def test_resume_refuses_another_text_and_clashing_settings(checkpoint, text_file, capsys):
    text_file.write_text(TEXT[:-1] + "A")  # same vocabulary, another text
    assert train_lm_main([str(text_file), "--steps", "300", "--checkpoint", str(checkpoint),
                          "--resume", "--no-progress"]) == 2
    assert "exact resume needs the same text" in capsys.readouterr().err
    text_file.write_text(TEXT)
    assert train_lm_main([str(text_file), "--steps", "300", "--checkpoint", str(checkpoint),
                          "--resume", "--hidden", "32", "--no-progress"]) == 2
    assert "--hidden 32 (checkpoint: 24)" in capsys.readouterr().err
    assert train_lm_main([str(text_file), "--resume", "--no-progress"]) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err


def test_foreign_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 64)
    assert generate_main(["--checkpoint", str(path)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0}, "temperature must be a positive finite number, got 0"),
    ({"temperature": float("nan")}, "temperature must be a positive finite number"),
    ({"top_k": 0}, "top_k must be a positive int or None, got 0"),
    ({"seed": 1.5}, "seed must be an int or None, got 1.5"),
])
def test_bad_sampling_settings(kwargs, match):
    codec = CharCodec("ab")
    lm = CharLM(build_model(codec.vocab_size, emb=4, hidden=8, layers=1), codec)
    with pytest.raises(ValueError, match=match):
        lm.sample(5, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch": 0}, "batch must be a positive int, got 0"),
    ({"k1": 8, "k2": 4}, "k2 must be >= k1 = 8, got 4"),
    ({"holdout": 1.0}, r"holdout must be a number in \[0, 1\), got 1.0"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"batch": 2000}, "batch must leave at least 2 tokens per stream"),
    ({"errors": "ignore"}, "errors must be 'replace' or 'strict', got 'ignore'"),
])
def test_bad_training_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LMTrainer(TEXT, **kwargs)


def test_model_and_codec_must_agree():
    with pytest.raises(ValueError, match="model.num_tokens is 5, codec.vocab_size is 3"):
        CharLM(build_model(5, emb=4, hidden=8, layers=1), CharCodec("ab"))


# -- the command line -------------------------------------------------------------------
def test_subcommands_plug_into_a_parser(text_file, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="streamrnn")
    sub = parser.add_subparsers(dest="command")
    register_train_lm(sub)
    register_generate(sub)
    path = tmp_path / "cli.safetensors"
    args = parser.parse_args(["train-lm", str(text_file), "--steps", "36", "--checkpoint",
                              str(path), *TINY])
    assert args.func(args) == 0
    args = parser.parse_args(["generate", "--checkpoint", str(path), "--prompt", "All:",
                              "--chars", "5", "--seed", "0", "--echo"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("All:")

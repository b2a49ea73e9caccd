"""streamrnn.adapters.tokens, grouped by property (invariant 4: adapters stream exactly).

- streaming encode == offline encode, for any split of the text into str / bytes pieces;
- streaming decode == offline decode, for any chunking of the ids, never a partial character;
- bad input: invalid UTF-8 under both policies (with counts), unknown characters, bad ids,
  mismatched vocabularies, bad settings — a clear ValueError and an unchanged stream.

Oracles are independent of the codecs: ``str.encode`` / ``bytes.decode(..., "replace")``
for bytes, a dict lookup for characters, ``Tokenizer.encode`` / ``decode`` of the whole
text for tokenizers (built here from a small corpus: no download).
"""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.adapters.tokens import (
    ByteCodec,
    CharCodec,
    HFCodec,
    StreamDecoder,
    StreamEncoder,
    TokenCodec,
    codec_from_config,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST_HF = settings(FAST, max_examples=30)  # x5 tokenizers

FRAGMENTS = [
    "hello", "world", "stream", "it's", "don't", " ", "  ", "\n", "\t", " \n ", ",", ".",
    "!", "?", "123", "e\u0301", "é", "ñ", "x\u0308\u0323", "Ω", "ß", "İ",
    "漢字", "中文字符", "かな", "カナ", "한국어",
    "مرحبا", "بالعالم", "\u0644\u064e\u0627",
    "नमस्ते", "١٢٣",
    "😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "🇫🇷", "🇯🇵🇰🇷",
    "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "\u3000", "\u00a0", "\u200d", "\ufffd", "\x0c", "\x85", "\u2028",
    "<mask>", " <mask> ", "<|endoftext|>",
]  # fmt: skip
CORPUS = [
    "hello world, this is a stream of text. it's multilingual: é ñ ß Ω",
    "漢字 中文字符 かな カナ 한국어 مرحبا بالعالم नमस्ते १२३ ١٢٣",
    "emoji 😀 👍🏽 👨\u200d👩\u200d👧\u200d👦 🇫🇷 🇯🇵 don't stop the stream!",
]

multilingual = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join),
    st.text(max_size=40),
)


@st.composite
def split_text(draw, text: str) -> list[str | bytes]:
    """Pieces whose UTF-8 bytes join to ``text``: all bytes, all str, or mixed; with
    empty pieces, one-byte pieces and multi-byte characters split across pieces."""
    mode = draw(st.sampled_from(["bytes", "str", "mixed", "one-byte"]))
    if mode == "str":
        cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=10)))
        bounds = [0, *cuts, len(text)]
        return [text[a:b] for a, b in pairwise(bounds)]
    data = text.encode("utf-8")
    if mode == "one-byte":
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    bounds = [0, *cuts, len(data)]
    pieces: list[str | bytes] = []
    for a, b in pairwise(bounds):
        chunk = data[a:b]
        if mode == "mixed" and draw(st.booleans()):
            try:
                pieces.append(chunk.decode("utf-8"))
                continue
            except UnicodeDecodeError:
                pass
        pieces.append(chunk)
    return pieces


@st.composite
def chunked(draw, ids: list[int]) -> list[list[int]]:
    """``ids`` in consecutive chunks of random sizes, empty ones included."""
    cuts = sorted(draw(st.lists(st.integers(0, len(ids)), max_size=10)))
    bounds = [0, *cuts, len(ids)]
    return [ids[a:b] for a, b in pairwise(bounds)]


def stream_encode(codec: TokenCodec, pieces) -> tuple[list[int], StreamEncoder]:
    enc = codec.encoder()
    ids: list[int] = []
    for piece in pieces:
        ids += enc.push(piece)
    return ids + enc.flush(), enc


def stream_decode(codec: TokenCodec, chunks) -> tuple[list[str], StreamDecoder]:
    dec = codec.decoder()
    return [dec.push(chunk) for chunk in chunks] + [dec.flush()], dec


# -- tokenizers built from a small local corpus --------------------------------------------


def _tk():
    """The optional ``tokenizers`` package; tests that need it skip without it."""
    return pytest.importorskip("tokenizers")


def _byte_level_bpe():
    tk = _tk()
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=400,
        show_progress=False,
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    return tok


def _byte_level_bpe_added_tokens():
    # GPT-2 / RoBERTa-style extras: a prefix space, a special token, and an added token
    # that absorbs the spaces around it
    tk = _tk()
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=400,
        show_progress=False,
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.add_tokens([tk.AddedToken("<mask>", lstrip=True, rstrip=True)])
    return tok


def _wordpiece():
    tk = _tk()
    tok = tk.Tokenizer(tk.models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = tk.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    tok.decoder = tk.decoders.WordPiece()
    trainer = tk.trainers.WordPieceTrainer(
        vocab_size=300, show_progress=False, special_tokens=["[UNK]", "[CLS]", "[SEP]"]
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    return tok


def _metaspace_unigram():
    tk = _tk()
    tok = tk.Tokenizer(tk.models.Unigram())
    tok.normalizer = tk.normalizers.NFKC()
    tok.pre_tokenizer = tk.pre_tokenizers.Metaspace()
    tok.decoder = tk.decoders.Metaspace()
    trainer = tk.trainers.UnigramTrainer(
        vocab_size=150, show_progress=False, unk_token="<unk>", special_tokens=["<unk>"]
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    return tok


def _byte_fallback_bpe():
    # Llama-style: Metaspace words, and <0xXX> byte tokens (regular tokens of the model's
    # vocabulary, not added ones) for characters outside the vocabulary
    tk = _tk()
    tok = tk.Tokenizer(tk.models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = tk.pre_tokenizers.Metaspace(prepend_scheme="first")
    tok.decoder = tk.decoders.Sequence(
        [
            tk.decoders.Metaspace(prepend_scheme="first"),
            tk.decoders.ByteFallback(),
            tk.decoders.Fuse(),
        ]
    )
    specials = ["<unk>"] + [f"<0x{i:02X}>" for i in range(256)]
    trainer = tk.trainers.BpeTrainer(vocab_size=450, show_progress=False, special_tokens=specials)
    tok.train_from_iterator(CORPUS * 3, trainer)
    serialised = json.loads(tok.to_str())
    serialised["added_tokens"] = serialised["added_tokens"][:1]  # keep only <unk> special
    return tk.Tokenizer.from_str(json.dumps(serialised))


TOKENIZERS = {
    "byte-level-bpe": _byte_level_bpe,
    "byte-level-bpe-added-tokens": _byte_level_bpe_added_tokens,
    "wordpiece": _wordpiece,
    "metaspace-unigram": _metaspace_unigram,
    "byte-fallback-bpe": _byte_fallback_bpe,
}


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def hf(request) -> HFCodec:
    return HFCodec(TOKENIZERS[request.param]())


@pytest.fixture(scope="module")
def bpe() -> HFCodec:
    return HFCodec(_byte_level_bpe())


# -- property: streaming encode == offline encode ---------------------------------------------


class TestStreamingEncodeEqualsOffline:
    @FAST
    @given(data=st.data(), text=multilingual)
    def test_byte_codec(self, data, text):
        pieces = data.draw(split_text(text))
        codec = ByteCodec(errors="strict")
        ids, enc = stream_encode(codec, pieces)
        assert ids == list(text.encode("utf-8")) == codec.encode(text)
        assert enc.counts == codec.counts == dict.fromkeys(codec.counts, 0)

    @FAST
    @given(data=st.data(), text=multilingual)
    def test_char_codec(self, data, text):
        pieces = data.draw(split_text(text))
        codec = CharCodec("".join(CORPUS))
        ids, enc = stream_encode(codec, pieces)
        index = {ch: i for i, ch in enumerate(codec.symbols)}
        assert ids == [index.get(ch, 0) for ch in text] == codec.encode(text)
        unknown = sum(ch not in index for ch in text)
        assert enc.counts["unknown"] == codec.counts["unknown"] == unknown

    @FAST_HF
    @given(data=st.data(), text=multilingual)
    def test_hf_codec(self, hf, data, text):
        pieces = data.draw(split_text(text))
        ids, enc = stream_encode(hf, pieces)
        assert ids == hf.tokenizer.encode(text, add_special_tokens=False).ids == hf.encode(text)
        assert enc.counts["forced_cuts"] == 0
        expected = 0 if hf.unknown_id is None else ids.count(hf.unknown_id)
        assert enc.counts["unknown"] == expected

    def test_no_cut_after_an_rstrip_added_token(self):
        # Found by the property above: "<mask>" (rstrip) absorbs the space after it and
        # the special token that follows takes no prefix space, while "<" alone does; a
        # cut after "<mask>" made " <" + "|endoftext|>" encode as [Ġ, eot].
        codec = HFCodec(_byte_level_bpe_added_tokens())
        text = "ab <mask> <|endoftext|>"
        enc = codec.encoder()
        ids = enc.push(text[:-12]) + enc.push(text[-12:]) + enc.flush()
        assert ids == codec.tokenizer.encode(text, add_special_tokens=False).ids

    @FAST
    @given(data=st.data(), raw=st.binary(max_size=40))
    def test_invalid_bytes_replaced_like_bytes_decode(self, data, raw):
        # arbitrary bytes, split anywhere: streaming == stdlib's offline "replace"
        cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
        bounds = [0, *cuts, len(raw)]
        pieces = [raw[a:b] for a, b in pairwise(bounds)]
        text = raw.decode("utf-8", "replace")
        for codec in (ByteCodec(), CharCodec(text + "abc")):
            ids, enc = stream_encode(codec, pieces)
            assert ids == codec.encode(raw)
            assert codec.decode(ids) == text
            assert enc.counts == codec.counts

    def test_held_back_ids_arrive_when_the_character_completes(self):
        enc = ByteCodec().encoder()
        flag = "🇫🇷".encode()
        assert enc.push(flag[:3]) == []
        assert enc.push(flag[3:5]) == list(flag[:4])
        assert enc.push("") == [] and enc.push(b"") == []
        assert enc.push(flag[5:]) == list(flag[4:])
        assert enc.flush() == []

    def test_hf_holds_back_only_the_last_word(self, bpe):
        enc = bpe.encoder()
        first = enc.push("hello wor")
        assert first == bpe.encode("hello")
        assert first + enc.push("ld") + enc.flush() == bpe.encode("hello world")

    def test_hf_without_pretokenizer_holds_everything_until_flush(self):
        tok = _byte_level_bpe()
        tok.pre_tokenizer = None
        codec = HFCodec(tok)
        enc = codec.encoder()
        assert enc.push("hello world ") == [] and enc.push("again") == []
        assert enc.flush() == codec.encode("hello world again")

    def test_hf_max_pending_forces_a_counted_cut(self, bpe):
        codec = HFCodec(bpe.tokenizer, max_pending=8)
        enc = codec.encoder()
        ids = enc.push("漢字中文字符かなカナ")  # 10 characters, no space
        assert ids == codec.encode("漢字中文字符かなカナ")
        assert enc.counts["forced_cuts"] == 1
        assert enc.push("漢字") == [] and enc.counts["forced_cuts"] == 1

    def test_codec_ignores_truncation_of_the_given_tokenizer(self, bpe):
        tok = _byte_level_bpe()
        tok.enable_truncation(max_length=2)
        assert HFCodec(tok).encode("hello world, this is a stream") == bpe.encode(
            "hello world, this is a stream"
        )


# -- property: streaming decode == offline decode, never a partial character ------------------


class TestStreamingDecodeEqualsOffline:
    @FAST
    @given(data=st.data(), text=multilingual)
    def test_byte_codec_valid_text(self, data, text):
        codec = ByteCodec(errors="strict")
        chunks = data.draw(chunked(list(text.encode("utf-8"))))
        outs, _ = stream_decode(codec, chunks)
        assert "".join(outs) == text == codec.decode(sum(chunks, []))
        emitted = ""
        for out in outs:  # each output is whole characters of the text, in order
            emitted += out
            assert text.startswith(emitted)

    @FAST
    @given(data=st.data(), ids=st.lists(st.integers(0, 255), max_size=40))
    def test_byte_codec_any_bytes(self, data, ids):
        codec = ByteCodec()
        outs, dec = stream_decode(codec, data.draw(chunked(ids)))
        assert "".join(outs) == bytes(ids).decode("utf-8", "replace") == codec.decode(ids)
        assert dec.counts == codec.counts

    @FAST
    @given(data=st.data(), text=multilingual)
    def test_char_codec(self, data, text):
        codec = CharCodec(text or "x")
        ids = codec.encode(text)
        outs, _ = stream_decode(codec, data.draw(chunked(ids)))
        assert "".join(outs) == text == codec.decode(ids)

    @FAST_HF
    @given(data=st.data(), text=multilingual)
    def test_hf_codec_text(self, hf, data, text):
        ids = hf.encode(text)
        outs, _ = stream_decode(hf, data.draw(chunked(ids)))
        whole = hf.tokenizer.decode(ids)
        assert "".join(outs) == whole == hf.decode(ids)
        if "\ufffd" not in whole:  # a held-back partial character would show as U+FFFD
            assert not any("\ufffd" in out for out in outs)

    @FAST_HF
    @given(data=st.data())
    def test_hf_codec_any_ids(self, hf, data):
        ids = data.draw(st.lists(st.integers(0, hf.vocab_size - 1), max_size=30))
        outs, _ = stream_decode(hf, data.draw(chunked(ids)))
        assert "".join(outs) == hf.decode(ids)

    def test_byte_level_tokens_inside_one_character_are_held(self, bpe):
        ids = bpe.encode("😀")
        assert len(ids) > 1  # the emoji is rare in the corpus: several byte tokens
        dec = bpe.decoder()
        assert [dec.push([i]) for i in ids[:-1]] == [""] * (len(ids) - 1)
        assert dec.push(ids[-1:]) == "😀" and dec.flush() == ""

    def test_byte_fallback_run_is_held_until_it_ends(self):
        # ByteFallback decodes a run of byte tokens at once: 00 alone is "\x00", but the
        # run 00 80 is invalid, so both bytes become U+FFFD; a skipped special token
        # (<unk>) in between does not end the run
        codec = HFCodec(_byte_fallback_bpe())
        byte = codec.tokenizer.token_to_id
        ids = [byte("<0x00>"), byte("<unk>"), byte("<0x80>")]
        dec = codec.decoder()
        assert dec.push(ids[:2]) == dec.push(ids[2:]) == ""
        assert dec.flush() == codec.decode(ids) == "\ufffd\ufffd"
        word = codec.encode(" stream")
        assert dec.push(ids[:1]) == "" and dec.push(word) == "\x00 stream"

    def test_accepts_tensors_and_bytes(self):
        codec = ByteCodec()
        assert codec.decode(torch.tensor([104, 105])) == "hi" == codec.decode(b"hi")
        assert codec.decoder().push(torch.tensor([104, 105])) == "hi"


# -- property: bad input gets a clear error or a counted replacement ---------------------------


class TestBadInput:
    @pytest.mark.parametrize("make", [ByteCodec, lambda **kw: CharCodec("ab€", **kw)])
    def test_invalid_utf8_policies(self, make):
        replace, strict = make(errors="replace"), make(errors="strict")
        assert replace.decode(replace.encode(b"a\xffb\xe2\x82")) == "a\ufffdb\ufffd"
        assert replace.counts["invalid_sequences"] == 2
        assert replace.counts["invalid_bytes"] == 3
        with pytest.raises(ValueError, match=r"invalid UTF-8 at byte 1 of the input \(ff: "):
            strict.encode(b"a\xffb")

    def test_strict_push_raises_and_changes_nothing(self):
        enc = ByteCodec(errors="strict").encoder()
        euro = "€".encode()
        assert enc.push(b"ab" + euro[:2]) == [97, 98]
        with pytest.raises(ValueError, match=r"invalid UTF-8 at byte 2 of the input"):
            enc.push(b"\xff")  # the pending e2 82 cannot go on with ff
        assert enc.push(euro[2:]) == list(euro)  # the stream goes on as if never pushed
        with pytest.raises(ValueError, match="multi-byte character was incomplete"):
            enc.push(euro[:1]) + enc.push("x")
        with pytest.raises(ValueError, match="unexpected end of data"):
            enc.flush()
        assert enc.push(euro[1:]) == list(euro) and enc.flush() == []

    def test_replace_counts_in_streams(self):
        enc = CharCodec("ab").encoder()
        assert enc.push(b"a\xe2\x82") == [1]
        assert enc.push("b") == [0, 2]  # an incomplete character followed by a str piece
        assert enc.push(b"\xe2") == [] and enc.flush() == [0]
        assert enc.counts["invalid_sequences"] == 2 and enc.counts["invalid_bytes"] == 3
        enc.reset()
        assert enc.counts["invalid_sequences"] == 0

    def test_decoder_invalid_policies(self):
        dec = ByteCodec(errors="strict").decoder()
        assert dec.push([0xE2, 0x82]) == ""
        with pytest.raises(ValueError, match=r"invalid UTF-8 at byte 0 of the decoded ids"):
            dec.push([0x41])  # e2 82 (bytes 0 and 1) cannot go on with 41
        assert dec.push([0xAC]) == "€"
        dec.push([0xE2])
        with pytest.raises(ValueError, match="unexpected end of data"):
            dec.flush()
        replace = ByteCodec().decoder()
        assert replace.push([0xE2, 0x41, 0xFF]) == "\ufffdA\ufffd"
        assert replace.counts["invalid_sequences"] == 2

    def test_lone_surrogates(self):
        codec = CharCodec("ab")
        assert codec.encode("a\ud83db") == [1, 0, 2]
        assert codec.counts["invalid_sequences"] == 1 and codec.counts["unknown"] == 0
        assert ByteCodec().encode("\udc80") == list("\ufffd".encode())
        with pytest.raises(ValueError, match="lone surrogate U\\+D83D at character 1"):
            ByteCodec(errors="strict").encoder().push("a\ud83d")

    def test_empty_pushes(self, bpe):
        for codec in (ByteCodec(), CharCodec("a"), bpe):
            enc, dec = codec.encoder(), codec.decoder()
            assert enc.push("") == enc.push(b"") == enc.flush() == []
            assert dec.push([]) == dec.flush() == ""
            assert codec.encode("") == [] and codec.decode([]) == ""

    def test_unknown_characters(self):
        codec = CharCodec(["a", "b", "c"], unknown="?")
        assert codec.symbols == "?abc"
        assert codec.encode("abxc?") == [1, 2, 0, 3, 0]
        assert codec.counts["unknown"] == 1  # "?" is the unknown symbol itself: known
        enc = codec.encoder()
        assert enc.push("zz") == [0, 0] and enc.counts["unknown"] == 2
        strict = CharCodec("ab", unknown=None).encoder()
        assert strict.push("ab") == [0, 1]
        with pytest.raises(ValueError, match=r"'c' \(U\+0063\) at index 1 .*unknown=None"):
            strict.push(b"ac")
        assert strict.push(b"b") == [1]

    def test_hf_unknown_counted(self):
        codec = HFCodec(_wordpiece())
        ids = codec.encode("hello ☃☃☃")
        assert codec.unknown_id in ids and codec.counts["unknown"] == ids.count(codec.unknown_id)

    @pytest.mark.parametrize(
        ("ids", "message"),
        [
            ([104, 256], r"ids\[1\] = 256 is not a token id: ids must be in \[0, 256\)"),
            ([-1], r"ids\[0\] = -1 is not a token id"),
            ([1.5], r"ids\[0\] must be an integer token id, got 1.5 \(float\)"),
            ([1, "a"], r"ids\[1\] must be an integer token id, got 'a' \(str\)"),
            ([True], r"ids\[0\] must be an integer token id, got True \(bool\)"),
            ([None], r"ids\[0\] must be an integer token id, got None"),
            (7, r"ids must be an iterable of integer token ids, got int"),
            ("hi", r"ids must be an iterable of integer token ids, got str"),
            ({1, 2}, r"ids must be an iterable of integer token ids, got set"),
            (torch.tensor([1.0]), r"ids\[0\] must be an integer token id, got 1.0"),
        ],
    )
    def test_bad_ids(self, ids, message):
        codec = ByteCodec()
        with pytest.raises(ValueError, match=message):
            codec.decode(ids)
        dec = codec.decoder()
        dec.push([0xE2])
        with pytest.raises(ValueError, match=message):
            dec.push(ids)
        assert dec.push([0x82, 0xAC]) == "€"  # the bad push changed nothing

    def test_bad_ids_char_and_hf(self, bpe):
        with pytest.raises(ValueError, match=r"ids\[2\] = 3 is not a token id.*\[0, 3\)"):
            CharCodec("ab").decode([0, 1, 3])
        with pytest.raises(ValueError, match=rf"ids\[0\] = {bpe.vocab_size} is not a token id"):
            bpe.decoder().push([bpe.vocab_size])

    def test_bad_pieces(self):
        with pytest.raises(ValueError, match="piece must be str or bytes, got int"):
            ByteCodec().encoder().push(5)
        with pytest.raises(ValueError, match="piece must be str or bytes, got list"):
            CharCodec("a").encode(["a"])

    def test_mismatched_vocabulary(self, bpe):
        codec = CharCodec("abc")
        with pytest.raises(ValueError, match=r"vocabulary does not match: .* first differ at "):
            codec.check_compatible(CharCodec("abd").config())
        with pytest.raises(ValueError, match="vocabulary does not match: the unknown symbol"):
            codec.check_compatible(CharCodec("abc", unknown="?").config())
        with pytest.raises(ValueError, match="vocabulary does not match: .* kind 'byte'"):
            codec.check_compatible(ByteCodec().config())
        with pytest.raises(ValueError, match="vocabulary does not match: .* vocab_sha256"):
            bpe.check_compatible(HFCodec(_wordpiece()).config())
        with pytest.raises(ValueError, match="vocabulary does not match"):
            HFCodec.from_config(bpe.config(), _wordpiece())
        with pytest.raises(ValueError, match="other_config must be a mapping"):
            codec.check_compatible("abc")
        # the errors policy is not part of the vocabulary
        codec.check_compatible(CharCodec("cab", errors="strict").config())

    def test_config_round_trip(self, bpe):
        for codec in (ByteCodec(errors="strict"), CharCodec("a€😀", unknown=None), bpe):
            config = json.loads(json.dumps(codec.config()))
            rebuilt = codec_from_config(config, tokenizer=bpe.tokenizer)
            assert type(rebuilt) is type(codec) and rebuilt.config() == codec.config()
            rebuilt.check_compatible(codec.config())
            assert rebuilt.encode("a€😀a") == codec.encode("a€😀a")

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            ({"kind": "char", "version": 2, "alphabet": "a", "unknown": None}, "version"),
            ({"kind": "char", "version": 1}, r"missing the key\(s\) \['alphabet', 'unknown'\]"),
            ({"kind": "spm"}, "must be one of 'byte', 'char', 'hf', got 'spm'"),
            (["byte"], "config must be a mapping"),
            ({"kind": "hf", "version": 1}, "needs its tokenizer"),
        ],
    )
    def test_bad_configs(self, config, message):
        with pytest.raises(ValueError, match=message):
            codec_from_config(config)

    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (lambda: ByteCodec(errors="ignore"), "errors must be 'replace' or 'strict', got"),
            (lambda: CharCodec("ab", unknown="??"), "unknown must be one character"),
            (lambda: CharCodec(["a", "bc"]), r"item 1 must be a single character .*, got 'bc'"),
            (lambda: CharCodec(b"ab"), "must be a str corpus .* got bytes"),
            (lambda: CharCodec("", unknown=None), "at least one character"),
            (lambda: CharCodec("a\ud800"), "lone surrogate U\\+D800"),
            (lambda: HFCodec("gpt2"), "tokenizer must be a tokenizers.Tokenizer, got str"),
            (lambda: HFCodec(_wordpiece(), max_pending=0), "max_pending must be a positive int"),
            (lambda: HFCodec(_wordpiece(), skip_special_tokens=1), "must be a bool, got 1"),
        ],
    )
    def test_bad_settings(self, make, message):
        with pytest.raises(ValueError, match=message):
            make()

    def test_unserialisable_tokenizer(self):
        class Custom:
            def pre_tokenize(self, pretok):
                pass

        tok = _wordpiece()
        tok.pre_tokenizer = _tk().pre_tokenizers.PreTokenizer.custom(Custom())
        with pytest.raises(ValueError, match="tokenizer must be serialisable"):
            HFCodec(tok)

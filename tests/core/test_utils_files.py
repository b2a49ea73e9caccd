"""streamrnn.utils files: the one atomic writer (fsync, same-folder temp, rename, folder
fsync, umask, orphans) and the one safetensors header reader (bounded, before allocation)."""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import streamrnn
from streamrnn.utils import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    read_header,
    read_tensors,
    remove_orphans,
)


def _temp_names(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".streamrnn-tmp"))


def test_write_order_is_fsync_file_rename_in_the_same_folder_then_fsync_folder(tmp_path,
                                                                                monkeypatch):
    """A mutant that drops either fsync, or writes the temp file elsewhere, fails here."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        mode = os.fstat(fd).st_mode
        events.append(("fsync", "dir" if stat.S_ISDIR(mode) else "file",
                       os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.dirname(os.path.abspath(src)),
                       os.path.abspath(dst), os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "sub" / "out.bin"
    target.parent.mkdir()
    atomic_write_bytes(target, b"payload")
    monkeypatch.undo()
    assert target.read_bytes() == b"payload"
    assert [e[:2] for e in events] == [("fsync", "file"), ("replace", str(target.parent)),
                                       ("fsync", "dir")]
    (_, _, file_ino), (_, _, dst, tmp_ino), (_, _, dir_ino) = events
    assert dst == str(target) and file_ino == tmp_ino  # the file fsynced is the one renamed
    assert dir_ino == os.stat(target.parent).st_ino  # the folder fsynced is the target's
    assert _temp_names(target.parent) == []


def test_the_temp_file_lives_in_the_target_folder_while_it_is_written(tmp_path):
    seen = []

    def write(f):
        f.write(b"x")
        seen.extend(_temp_names(tmp_path))

    atomic_write(tmp_path / "a.bin", write)
    assert len(seen) == 1 and seen[0].startswith(".a.bin.")
    assert os.listdir(tmp_path) == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    path = tmp_path / "keep.txt"
    atomic_write_text(path, "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["keep.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_mode_follows_the_umask_for_files_and_checkpoints(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "plain.bin", b"x")
        bank = streamrnn.StreamBank(streamrnn.GRU(2, 3, seed=0))
        bank.save(tmp_path / "bank.safetensors")
    finally:
        os.umask(old)
    for name in ("plain.bin", "bank.safetensors"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask


def test_a_save_killed_midway_leaves_a_temp_file_the_next_save_removes(tmp_path):
    path = tmp_path / "bank.safetensors"
    code = (
        "import os, sys\n"
        "from streamrnn.utils import atomic_write\n"
        "def write(f):\n"
        "    f.write(b'x' * 4096); f.flush(); os._exit(9)\n"
        f"atomic_write({str(path)!r}, write)\n"
    )
    seen = []
    for _ in range(2):  # each killed writer first removes the orphan of the one before
        assert subprocess.run([sys.executable, "-c", code]).returncode == 9
        seen.append(_temp_names(tmp_path))
    assert [len(s) for s in seen] == [1, 1] and seen[0] != seen[1]
    assert os.path.getsize(tmp_path / seen[1][0]) == 4096
    legacy = tmp_path / ".bank.safetensors.ab12cd_e.tmp"  # the name an older version used
    legacy.write_bytes(b"old temp")
    others = [".other.safetensors.ab12cd_e.tmp", "notes.tmp", "x.streamrnn-tmp",
              f".live.bin.{os.getppid()}.0123abcd.streamrnn-tmp"]  # a live writer's
    for name in others:
        (tmp_path / name).write_bytes(b"keep")
    streamrnn.StreamBank(streamrnn.GRU(2, 3, seed=0)).save(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["bank.safetensors", *others])


def test_remove_orphans_keeps_this_process_files_in_progress(tmp_path):
    def write(f):
        f.write(b"x")
        assert remove_orphans(tmp_path) == []  # ours, being written: kept
        assert len(_temp_names(tmp_path)) == 1

    atomic_write(tmp_path / "a.bin", write)
    assert os.listdir(tmp_path) == ["a.bin"]


def test_writing_over_a_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        atomic_write_bytes(tmp_path, b"x")


# -- the header reader --------------------------------------------------------------------
def _file(tmp_path, header: dict, data: bytes = b"", length: int | None = None):
    raw = json.dumps(header).encode()
    path = tmp_path / "forged.safetensors"
    n = len(raw) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + raw + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "length", "match"),
    [
        ({}, b"", 2**62, "header length"),
        ({"w": {"dtype": "F32", "shape": [1 << 30, 1 << 30], "data_offsets": [0, 16]}},
         bytes(16), None, "tensor 'w' has 16 bytes"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8), None,
         "declare 16 bytes of data, the file holds 8"),
        ({"w": {"dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}}, bytes(16), None,
         "bad entry"),
        ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16), None,
         "bad entry"),
        ({"__metadata__": {"format": 5}}, b"", None, "metadata must map strings"),
        ([1, 2], b"", None, "not a JSON object"),
    ],
    ids=["huge-length", "shape-vs-bytes", "short-data", "dtype", "negative", "meta", "list"],
)
def test_forged_headers_are_refused_before_any_tensor_is_read(tmp_path, header, data, length,
                                                               match):
    path = _file(tmp_path, header, data, length)
    with pytest.raises(ValueError, match=match) as info:
        read_header(path)
    assert str(path) in str(info.value)


def test_deeply_nested_json_is_a_value_error(tmp_path):
    path = _file(tmp_path, {})
    raw = b"[" * 100_000 + b"]" * 100_000
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ValueError, match="not JSON"):
        read_header(path)


def test_header_then_tensors_round_trip_and_check_format_and_version(tmp_path):
    path = tmp_path / "ok.safetensors"
    save_file({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)},
              str(path), {"format": "mine", "version": "2", "cfg": json.dumps({"h": 3})})
    head = read_header(path, format="mine", versions=("1", "2"))
    assert head.json("cfg") == {"h": 3} and head.numel() == 8
    assert {k: t.shape for k, t in head.tensors.items()} == {"a": (2, 3), "b": (2,)}
    assert torch.equal(read_tensors(head, ["a"])["a"], torch.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match="holds format 'mine', expected 'yours'"):
        read_header(path, format="yours")
    with pytest.raises(ValueError, match="version '2', this streamrnn reads version 1"):
        read_header(path, versions=("1",))
    with pytest.raises(ValueError, match="no 'missing' entry"):
        head.field("missing")
    with pytest.raises(ValueError, match=r"lacks the tensor\(s\) \['c'\]"):
        read_tensors(head, ["c"])

"""``python -m streamrnn`` is the ``streamrnn`` command: same parser, same exit status."""

from __future__ import annotations

import subprocess
import sys

import streamrnn


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamrnn", *args], capture_output=True,
                          text=True, timeout=120)


def test_python_m_streamrnn_prints_the_version():
    done = run_module("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"streamrnn {streamrnn.__version__}"


def test_python_m_streamrnn_refuses_an_unknown_command_with_a_usage_error():
    done = run_module("no-such-command")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: streamrnn")
    assert "no-such-command" in done.stderr

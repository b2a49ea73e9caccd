"""The other language: examples/export_node/listen.js (onnxruntime-node) runs the exported
recogniser on the shipped demo WAV in 20 ms chunks, carrying all state between calls,
and prints what ``streamrnn listen --json`` prints: the same digits at the same times
with the same latencies.

Needs Node.js and ``npm ci`` in examples/export_node (``.ci/run`` installs both); it
fails, rather than skips, where they are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from _data import demo_digits
from _exported import fresh_path

from streamrnn.apps.speech import DigitRecognizer, demo_path, export_onnx, listen_main

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "export_node"


def test_node_example_prints_what_streamrnn_listen_prints(capsys):
    node = shutil.which("node")
    assert node, "Node.js is missing: .ci/run installs it (apt-get install nodejs npm)"
    assert (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir(), (
        "onnxruntime-node is missing: run `npm ci` in examples/export_node (.ci/run does)")
    path = fresh_path("digits")
    export_onnx(DigitRecognizer.load(), path)
    done = subprocess.run([node, str(EXAMPLE / "listen.js"), str(path), demo_path()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in done.stdout.splitlines()]

    assert listen_main([demo_path(), "--json"]) in (0, None)
    want = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["digit"] for d in want] == demo_digits()  # the demo's words
    assert got == want

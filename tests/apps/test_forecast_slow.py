"""Reduced runs of the real-data scripts and the full demo (``pytest -m slow``).

ETTh1 (one horizon, OT alone) and HAPT (two epochs) are read from ``../shared/data``
and skipped when it is absent; the demo needs nothing but the installed packages.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from _data import require

from streamrnn.apps.forecast import demo_main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_demo_beats_naive_and_snarimax(tmp_path, capsys):
    assert demo_main(["--json", "--no-progress", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == 1379
    assert summary["mae"] < 0.95 * summary["naive_mae"]
    assert summary["mae"] < 0.95 * summary["snarimax_mae"]


def test_ett_reduced_online_forecast_beats_naive_on_the_test_block():
    ett = _example("ett_forecast")
    require(ett.DATA)
    report = ett.run(ett.DATA, [24], ["univariate"], lr=1e-4, seed=0)
    scores = report["scores"][(24, "univariate")]
    assert scores["scored"] == 2880  # the standard test block's rows
    mse, mae = scores["forecast"]
    assert mae < scores["naive"][1] and mae < scores["snarimax"][1]
    assert mse < scores["naive"][0]


def test_hapt_reduced_beats_the_majority_class_on_held_out_users():
    hapt = _example("hapt_activity")
    require(hapt.DATA / "RawData" / "labels.txt")
    r = hapt.run(hapt.DATA, epochs=2, hidden=32, chunk=128, lr=2e-3, seed=0, log=lambda m: None)
    assert r["labelled_steps"] > 100_000
    assert r["accuracy"] > r["majority_accuracy"] + 0.1

"""The scale-out example runs: simulated sensors through a real mosquitto broker into a
ShardedBank of 2 shards, one shard killed mid-run (``examples/distributed_sensors.py``,
small). Every record published is received, every sensor's offset equals the ticks it
sent (nothing lost or doubled across the kill), the killed shard recovers, and the
forecaster beats the naive last value.

Needs the ``mosquitto`` binary (``.ci/run`` installs it): without it this fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "distributed_sensors.py"


def test_sensors_through_mqtt_into_two_shards_lose_nothing_across_a_kill():
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--sensors", "300", "--ticks", "8", "--kill-at", "4"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    counts = re.search(r"records published ([\d,]+), received ([\d,]+)", out).groups()
    published, received = (int(c.replace(",", "")) for c in counts)
    assert published == received == 300 * 8
    assert "streams whose offset != 8: 0 -> nothing lost" in out
    assert re.search(r"shard 0 killed at tick 4: that push took [\d.]+ s", out)
    model, naive = map(float, re.search(
        r"forecaster ([\d.]+), naive \(last value\) ([\d.]+)", out).groups())
    assert model < naive

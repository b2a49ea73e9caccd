"""Forecast a sensor column of a CSV H steps ahead while learning online (``streamrnn forecast``).

A thin wrapper of :func:`streamrnn.apps.forecast.forecast_main`: the same arguments
as ``streamrnn forecast``. Without a file it runs ``streamrnn demo`` (river's bundled
WaterFlow series, 1,268 hourly readings, forecast 6 hours ahead; nothing is downloaded).

Run::

    python examples/sensor_forecast.py                                  # the demo
    python examples/sensor_forecast.py FILE.csv --target COL --horizon H \\
        [--time-column C] [--inputs COL ...] [--period 1h] [--json] [--out DIR]

For example, on ETTh1's oil temperature with the six loads as inputs::

    python examples/sensor_forecast.py ../shared/data/sensors/ett/ETTh1.csv --target OT \\
        --horizon 24 --inputs HUFL HULL MUFL MULL LUFL LULL --lr 1e-4
"""

from __future__ import annotations

import sys

from streamrnn.apps.forecast import demo_main, forecast_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") and "--target" not in argv:
        return demo_main(argv)
    return forecast_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""ETTh1 / ETTm1 oil temperature (OT), forecast online, under two protocols (labelled).

Data: ETTh1 (hourly) and ETTm1 (every 15 min) (Zhou et al., "Informer", AAAI 2021), one
electricity transformer, CC BY-ND 4.0. The CSVs are read as is from
``../shared/data/sensors/ett`` (``--data-dir``); nothing derived from them is written.
Scores are MSE / MAE on OT z-scored with the train block's mean and (population) std.

Protocol "honest" (a target is learned only once observed: label delay = horizon)
    :func:`streamrnn.apps.forecast.forecast_csv`, the ``streamrnn forecast`` command: a
    direct H-step LSTM learning by TBPTT while it forecasts, combined online with the last
    value and SNARIMAX (prediction with expert advice), reads the stream from the first
    row, learns through the standard train and validation blocks (12 / 4 months) and keeps
    learning on the test block (4 months), where it is scored prequentially: the forecast
    of OT[t + H] is made at row t, learned from when OT[t + H] arrives. Scored: the H-th
    step. The learning rate (1e-4) was chosen on ETTh1's validation block.
Protocol "fsnet" (FSNet, Pham et al. ICLR 2023; OneNet, Wen et al. NeurIPS 2023)
    Their online split: the first 4 months train, the next month validation, the next 15
    months the online phase (rows ``[5 * 30 * 24, 20 * 30 * 24)`` of ETTh1, x4 for ETTm1);
    seq_len 60, horizons 1 / 24 / 48; the score is the MSE / MAE averaged over all H steps
    of every forecast window, cumulated over the online phase. In their code the whole
    window OT[t + 1 .. t + H] is revealed to the model right after it forecasts at t (a
    label delay of 1 for every step of the window). Here the model is
    :class:`streamrnn.river.RNNForecaster` (a recurrent one-step model rolled forward H
    steps, combined online per horizon with the last value, the seasonal last value and
    SNARIMAX): it learns each value once, when it arrives, so it does not use that early
    reveal, and its recurrent state replaces the 60-step window. It learns from the first
    row; forecasts are scored whose targets lie in the online phase.

The two protocols score different things (the H-th step vs the mean over 1..H; different
test periods), so their numbers are not comparable with each other. Published rows (the
data README) are offline, windowed, multivariate or univariate as marked: scale only.

Run::

    python examples/ett_forecast.py                            # ETTh1, both protocols
    python examples/ett_forecast.py --dataset ETTm1 --protocol fsnet --horizons 1 24 48
    python examples/ett_forecast.py --horizons 24 --settings univariate   # quicker
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from streamrnn.apps.forecast import forecast_csv
from streamrnn.river import RNNForecaster

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data" / "sensors" / "ett"
DATA = DATA_DIR / "ETTh1.csv"
LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
TRAIN_END, VAL_END, TEST_END = 8640, 11520, 14400  # ETTh1 row indices (header excluded)
STEPS_PER_HOUR = {"ETTh1": 1, "ETTm1": 4}

# published MSE / MAE on z-scored values (data README): horizon -> (mse, mae)
PUBLISHED_M1 = [
    ("Informer", "univariate", {24: (0.030, 0.137)}),
    ("LSTMa", "univariate", {24: (0.121, 0.233)}),
    ("Informer", "multivariate 7 -> 7", {24: (0.323, 0.369), 48: (0.494, 0.503)}),
    ("LSTMa", "multivariate 7 -> 7", {24: (0.621, 0.629), 48: (1.392, 0.939)}),
    ("S4", "multivariate 7 -> 7", {24: (0.426, 0.487), 48: (0.580, 0.565)}),
]
PUBLISHED = [
    ("Informer", "univariate", {24: (0.098, 0.247)}),
    ("LSTMa", "univariate", {24: (0.114, 0.272)}),
    ("DeepAR", "univariate", {24: (0.107, 0.280)}),
    ("ARIMA", "univariate", {24: (0.108, 0.284)}),
    ("Informer", "multivariate 7 -> 7", {24: (0.577, 0.549), 48: (0.685, 0.625)}),
    ("LSTMa", "multivariate 7 -> 7", {24: (0.650, 0.624), 48: (0.702, 0.675)}),
    ("LSTnet", "multivariate 7 -> 7", {24: (1.293, 0.901), 48: (1.456, 0.960)}),
    ("S4", "multivariate 7 -> 7", {24: (0.525, 0.542), 48: (0.641, 0.615)}),
]


def _per_hour(path: Path) -> int:
    return STEPS_PER_HOUR.get(Path(path).stem, 1)


def split_and_scale(path: Path) -> dict:
    """The block boundaries (as the dates of their first rows) and OT's train statistics."""
    k = _per_hour(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) < k * TEST_END + 1:
        raise SystemExit(f"{path}: expected at least {k * TEST_END + 1} rows, got {len(rows)}")
    ot = np.array([float(r["OT"]) for r in rows[: k * TRAIN_END]])
    return {
        "val": rows[k * TRAIN_END]["date"],
        "test": rows[k * VAL_END]["date"],
        "end": rows[k * TEST_END]["date"],
        "mean": float(ot.mean()),
        "std": float(ot.std()),  # population std: sklearn's StandardScaler
        "season": 24 * k,
    }


def zscores(result, std: float, season: int) -> dict:
    """MSE / MAE of each forecaster on the scored steps, in train-block z units."""
    s = result.scored
    rows = np.arange(len(result.naive))
    h = result.horizon
    back = rows + h - season * -(-h // season)  # the seasonal last value of each target
    forecasts = {"forecast": result.forecast, "rnn": result.rnn, "naive": result.naive,
                 "seasonal": np.where(back >= 0, result.naive[np.maximum(back, 0)],
                                      result.naive),
                 "snarimax": result.snarimax}
    out = {}
    for name, values in forecasts.items():
        err = (values[s] - result.actual[s]) / std
        out[name] = (float(np.mean(err**2)), float(np.mean(np.abs(err))))
    return out


def run(path: Path, horizons: list[int], settings: list[str], lr: float, seed: int) -> dict:
    split = split_and_scale(path)
    scores: dict = {}
    for horizon in horizons:
        for setting in settings:
            t0 = time.perf_counter()
            result = forecast_csv(
                path, target="OT", horizon=horizon, time_column="date",
                inputs=LOADS if setting == "with loads" else [], lr=lr, seed=seed,
                score_from=split["test"], score_until=split["end"], stop_at=split["end"],
                snarimax=setting == settings[0],
            )
            z = zscores(result, split["std"], split["season"])
            scores[(horizon, setting)] = {**z, "scored": int(result.scored.sum()),
                                          "seconds": time.perf_counter() - t0}
            print(f"honest H={horizon} {setting}: {int(result.scored.sum())} test forecasts,"
                  f" MAE z {z['forecast'][1]:.4f} (LSTM alone {z['rnn'][1]:.4f}, naive "
                  f"{z['naive'][1]:.4f}), {time.perf_counter() - t0:.0f} s", flush=True)
    return {"split": split, "scores": scores, "dataset": Path(path).stem}


def run_fsnet(path: Path, horizons: list[int], seed: int) -> dict:
    """The FSNet / OneNet online protocol (see the module docstring): MSE / MAE averaged
    over steps 1..H of every window whose targets lie in the online phase, z units."""
    k = _per_hour(path)
    with open(path, newline="") as f:
        ot = np.array([float(r["OT"]) for r in csv.DictReader(f)])
    train, start, end = 4 * 30 * 24 * k, 5 * 30 * 24 * k, min(20 * 30 * 24 * k, len(ot))
    std = float(ot[:train].std())
    season = 24 * k
    out = {}
    for h in horizons:
        t0 = time.perf_counter()
        model = RNNForecaster(seed=seed, season=season)
        alone = RNNForecaster(seed=seed, combine=False)
        names = model.combination.names  # model, last, seasonal, snarimax
        sq = {n: 0.0 for n in ("combination", "rnn alone", *names[1:])}
        ab = dict.fromkeys(sq, 0.0)
        count = 0
        for t in range(end - h):
            model.learn_one(float(ot[t]))
            alone.learn_one(float(ot[t]))
            if t + 1 < start:
                continue  # forecasts made at t are for t + 1 .. t + h: online phase only
            target = ot[t + 1 : t + 1 + h]
            rows = {"combination": np.array(model.forecast(h)),
                    "rnn alone": np.array(alone.forecast(h))}
            rows.update(zip(names[1:], model.combination.table[1:], strict=True))
            for name, f in rows.items():
                err = (f - target) / std
                sq[name] += float(np.mean(err**2))
                ab[name] += float(np.mean(np.abs(err)))
            count += 1
        out[h] = {n: (sq[n] / count, ab[n] / count) for n in sq}
        out[h]["windows"] = count
        print(f"fsnet H={h}: {count} windows, MAE z {out[h]['combination'][1]:.4f} (alone "
              f"{out[h]['rnn alone'][1]:.4f}, last {out[h]['last'][1]:.4f}), "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    return {"scores": out, "std": std, "start": start, "end": end, "season": season}


def fsnet_table(report: dict, horizons: list[int]) -> str:
    head = " | ".join(f"H={h} MSE | H={h} MAE" for h in horizons)
    lines = [f"| forecaster | {head} |", "|---|" + "---:|" * (2 * len(horizons))]
    labels = {"combination": "streamrnn RNNForecaster, combination",
              "rnn alone": "streamrnn RNNForecaster, network alone", "last": "last value",
              "seasonal": f"seasonal last value ({report['season']} steps)",
              "snarimax": "river SNARIMAX(3,1,3)"}
    for key, label in labels.items():
        cells = []
        for h in horizons:
            mse, mae = report["scores"][h][key]
            cells += [f"{mse:.4f}", f"{mae:.4f}"]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def table(report: dict, horizons: list[int], settings: list[str]) -> str:
    scores = report["scores"]

    def cells(get) -> str:
        parts = []
        for h in horizons:
            pair = get(h)
            parts += ["-", "-"] if pair is None else [f"{pair[0]:.4f}", f"{pair[1]:.4f}"]
        return " | ".join(parts)

    head = " | ".join(f"H={h} MSE | H={h} MAE" for h in horizons)
    lines = [f"| method | protocol | {head} |",
             "|---|---|" + "---:|" * (2 * len(horizons))]
    for setting in settings:
        what = "+ 6 loads" if setting == "with loads" else "only"
        lines.append(f"| streamrnn combination, OT {what} | honest: online, label delay H, "
                     f"H-th step | {cells(lambda h, s=setting: scores[(h, s)]['forecast'])} |")
        lines.append(f"| streamrnn LSTM alone, OT {what} | same forecasts | "
                     f"{cells(lambda h, s=setting: scores[(h, s)]['rnn'])} |")
    first = settings[0]
    lines.append(f"| naive last value OT[t] | same forecasts | "
                 f"{cells(lambda h: scores[(h, first)]['naive'])} |")
    lines.append(f"| seasonal last value (1 day) | same forecasts | "
                 f"{cells(lambda h: scores[(h, first)]['seasonal'])} |")
    lines.append(f"| river SNARIMAX(3,1,3), online | same forecasts | "
                 f"{cells(lambda h: scores[(h, first)]['snarimax'])} |")
    for name, kind, numbers in (PUBLISHED_M1 if report.get("dataset") == "ETTm1"
                                else PUBLISHED):
        lines.append(f"| {name} (published, {kind}) | offline windows, mean of steps 1..H | "
                     f"{cells(numbers.get)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--dataset", nargs="+", default=["ETTh1"], choices=["ETTh1", "ETTm1"])
    parser.add_argument("--protocol", nargs="+", default=["honest", "fsnet"],
                        choices=["honest", "fsnet"])
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 24, 48])
    parser.add_argument("--settings", nargs="+", default=["univariate"],
                        choices=["univariate", "with loads"])
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for name in args.dataset:
        path = args.data_dir / f"{name}.csv"
        if not path.is_file():
            raise SystemExit(f"{name} not found at {path} (pass --data-dir)")
        unit = "hours" if name == "ETTh1" else "15-min steps"
        if "honest" in args.protocol:
            report = run(path, args.horizons, args.settings, args.lr, args.seed)
            split = report["split"]
            print(f"\n{name}, protocol HONEST (label delay = H; H-th step): OT forecast H "
                  f"{unit} ahead; test block {split['test']} .. {split['end']} (exclusive), "
                  f"z-scored with the train block's mean {split['mean']:.3f} and std "
                  f"{split['std']:.3f}\n")
            print(table(report, args.horizons, args.settings))
            print("\nPublished rows: offline, windowed, mean of steps 1..H: another protocol, "
                  "for scale only.\n")
        if "fsnet" in args.protocol:
            report = run_fsnet(path, args.horizons, args.seed)
            print(f"\n{name}, protocol FSNET / ONENET (online phase rows {report['start']}.."
                  f"{report['end']}, MSE / MAE averaged over steps 1..H and over windows, "
                  f"z units with std {report['std']:.3f}); no future value is learned early\n")
            print(fsnet_table(report, args.horizons))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

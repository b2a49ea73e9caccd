"""Which way of combining the forecasters misses "<= min(last value, SNARIMAX)" least?

Runs ``bench_forecast.py --path cli`` once (series, protocol and scoring as there; add
``--ett`` for ETTh1's test block), records every call the command makes to its
:class:`~streamrnn.river.experts.ExpertMix` (the experts' forecasts and the targets as
they arrive), then replays those calls through other combiners. The experts never see the
combination, so a replay gives exactly the MAE the command would have printed with that
combiner (the first row, the command's own setting, is checked against the recorded run).

Combiners: ExpertMix's methods and losses, priors favouring the baselines, and two
second-order methods of the forecasting literature written out here (Gaillard, Stoltz &
van Erven 2014, "A second-order bound with excess losses": MLpol; Wintenberger 2017,
"Optimal learning with Bernstein online aggregation": BOA, with the adaptive rate of the
opera R package). The last column is the best *fixed* convex combination of the experts
in hindsight (a 0.05 grid): where it is the best baseline alone, no learned combination
can do better than tie with it.

The series are bench_forecast's, held-out ones included: a setting chosen from this table
would be tuned on them. It is a diagnosis, not a selection.

Run::

    python benchmarks/mix_methods.py [--ett] [--series TrumpApproval nile]
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile

import bench_forecast as bf
import numpy as np
import torch

from streamrnn.river import experts


def record(names: list, ett: bool) -> dict:
    """{(series, h): (expert names, calls, scored mask, actuals, the command's scores)}."""
    import streamrnn.apps.forecast as fc

    calls: list = []
    results: list = []
    real_predict, real_update, real_csv = experts.ExpertMix.predict, experts.ExpertMix.update, \
        fc.forecast_csv

    def predict(self, origin, forecasts, first=1):
        calls.append(("p", origin, np.array(forecasts, float), first))
        return real_predict(self, origin, forecasts, first)

    def update(self, step, y):
        calls.append(("u", step, float(y)))
        return real_update(self, step, y)

    def forecast_csv(*args, **kwargs):
        results.append(real_csv(*args, **kwargs))
        return results[-1]

    out = {}
    experts.ExpertMix.predict, experts.ExpertMix.update = predict, update
    fc.forecast_csv = forecast_csv
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names + (["ETTh1"] if ett else []):
                for h in (1, 3):
                    calls.clear()
                    scores = bf.cli_scores(name, h, tmp)
                    r = results.pop()
                    out[(name, h)] = (tuple(r.weights), list(calls), r.scored, r.actual, scores)
    finally:
        experts.ExpertMix.predict, experts.ExpertMix.update = real_predict, real_update
        fc.forecast_csv = real_csv
    return out


class PlainMix:
    """MLpol, BOA or rescaled NormalHedge on absolute losses, per horizon, scored as
    targets arrive (the pending bookkeeping of ExpertMix, written plainly).

    "rescaled": NormalHedge on the regrets of the raw losses divided by the largest loss
    range seen so far *now* (ExpertMix's NormalHedge divides each round's losses by the
    largest range seen by that round, so rounds before the range grew weigh more).
    """

    def __init__(self, k: int, rule: str) -> None:
        self.k, self.rule, self.pending, self.state = k, rule, {}, {}

    def _weights(self, h: int) -> np.ndarray:
        s = self.state.get(h)
        if s is None:
            return np.full(self.k, 1.0 / self.k)
        if self.rule == "mlpol":  # w_k ~ [R_k]+ / sum r_k^2 (opera's MLpol)
            w = np.where((s["R"] > 0) & (s["V"] > 0), s["R"] / np.maximum(s["V"], 1e-300), 0.0)
        elif self.rule == "rescaled":  # w_k ~ [R_k]+ exp(u [R_k]+^2 / 2), mean exp(.) = e
            r = np.maximum(s["R"], 0.0) / s["S"] if s["S"] > 0 else np.zeros(self.k)
            half = r * r / 2.0
            if half.max() <= 0:
                return np.full(self.k, 1.0 / self.k)
            lo, hi = 0.0, 1.0 / half.max()  # the root u = 1 / c lies in (0, hi]
            for _ in range(100):
                u = (lo + hi) / 2.0
                z = u * half
                if z.max() + math.log(np.exp(z - z.max()).mean()) > 1.0:
                    hi = u
                else:
                    lo = u
            z = hi * half
            w = r * np.exp(z - z.max())
        else:  # BOA: w_k ~ eta_k exp(eta_k sum(r - eta r^2))
            if s["B"] <= 0:
                return np.full(self.k, 1.0 / self.k)
            z = s["eta"] * s["Rreg"]
            w = s["eta"] * np.exp(z - z.max())
        return w / w.sum() if w.sum() > 0 else np.full(self.k, 1.0 / self.k)

    def predict(self, origin: int, col: np.ndarray, h: int) -> float:
        self.pending[origin + h] = (h, col)
        ok = np.isfinite(col)
        w = self._weights(h) * ok
        return float(w @ np.where(ok, col, 0.0) / w.sum()) if w.sum() > 0 else \
            float(np.nanmean(np.where(ok, col, np.nan)))

    def update(self, step: int, y: float) -> None:
        made = self.pending.pop(step, None)
        if made is None or not math.isfinite(y):
            return
        h, col = made
        loss = np.abs(col - y)
        loss = np.where(np.isfinite(loss), loss, np.nanmax(np.where(np.isfinite(loss), loss,
                                                                    np.nan)))
        w = self._weights(h)
        r = w @ loss - loss  # instantaneous regrets
        s = self.state.setdefault(h, {"R": np.zeros(self.k), "V": np.zeros(self.k), "B": 0.0,
                                      "eta": np.zeros(self.k), "Rreg": np.zeros(self.k),
                                      "S": 0.0})
        s["R"] += r
        s["S"] = max(s["S"], float(loss.max() - loss.min()))
        s["V"] += r * r
        s["B"] = max(s["B"], float(np.abs(r).max()))
        if s["B"] > 0:  # else every regret so far was 0: nothing learned yet
            s["eta"] = np.minimum(1.0 / (2.0 * s["B"]),
                                  np.sqrt(math.log(self.k) / np.maximum(s["V"], 1e-300)))
        s["Rreg"] += r - s["eta"] * r * r


def replay(calls: list, make) -> np.ndarray:
    """The combined forecast of each predict call, in order."""
    mix, out = make(), []
    for c in calls:
        if c[0] == "p":
            f = mix.predict(c[1], c[2], c[3]) if isinstance(mix, experts.ExpertMix) else \
                [mix.predict(c[1], c[2][:, 0], c[3])]
            out.append(float(f[0]))
        else:
            mix.update(c[1], c[2])
    return np.array(out)


def best_fixed(calls: list, scored, actual) -> float:
    """MAE of the best fixed convex combination of the experts in hindsight (0.05 grid)."""
    table = np.array([c[2][:, 0] for c in calls if c[0] == "p"])[scored]
    y = actual[scored]
    keep = np.isfinite(table).all(1)
    table, y = table[keep], y[keep]
    grid = np.arange(0, 1.0001, 0.05)
    best = math.inf
    for w in itertools.product(grid, repeat=table.shape[1] - 1):
        if sum(w) <= 1 + 1e-9:
            best = min(best, float(np.abs(table @ np.array([*w, 1 - sum(w)]) - y).mean()))
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", default=None)
    parser.add_argument("--ett", action="store_true", help="add ETTh1's test block")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = record(args.series or bf.DEV + bf.HELD_OUT, args.ett)

    def mix(method, loss, prior_rnn=None):
        def make(names):
            k = len(names)
            prior = None if prior_rnn is None else \
                [prior_rnn if n == "rnn" else (1 - prior_rnn) / (k - 1) for n in names]
            return lambda: experts.ExpertMix(names, method=method, loss=loss, prior=prior)
        return make

    combiners = {
        "NormalHedge, absolute (the command's)": mix("normalhedge", "absolute"),
        "NormalHedge, gradient": mix("normalhedge", "gradient"),
        "AdaHedge, absolute": mix("adahedge", "absolute"),
        "AdaHedge, gradient": mix("adahedge", "gradient"),
        "NormalHedge, absolute, prior 0.1 on rnn": mix("normalhedge", "absolute", 0.1),
        "NormalHedge, absolute, regrets rescaled": lambda names: lambda: PlainMix(
            len(names), "rescaled"),
        "MLpol, absolute": lambda names: lambda: PlainMix(len(names), "mlpol"),
        "BOA, absolute": lambda names: lambda: PlainMix(len(names), "boa"),
    }
    ratios = {label: {} for label in combiners}
    for key, (names, calls, scored, actual, scores) in runs.items():
        ref = min(scores["last"], scores["SNARIMAX"])
        for label, make in combiners.items():
            f = replay(calls, make(names))
            ratios[label][key] = float(np.abs(f[scored] - actual[scored]).mean()) / ref
        own = ratios["NormalHedge, absolute (the command's)"][key]
        if not math.isclose(own * ref, scores["combination"], rel_tol=1e-12):
            raise RuntimeError(f"{key}: the replay gives MAE {own * ref!r}, the command "
                               f"printed {scores['combination']!r}: the recording is incomplete")
        ratios.setdefault("best fixed combination (hindsight)", {})[key] = \
            best_fixed(calls, scored, actual) / ref
    keys = list(runs)
    print("MAE / min(last value, SNARIMAX) per row (> 1: a miss)\n")
    print("| combiner | misses | worst | geometric mean | " +
          " | ".join(f"{n} +{h}" for n, h in keys) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(keys))
    for label, row in ratios.items():
        v = np.array([row[k] for k in keys])
        print(f"| {label} | {int((v > 1).sum())} | {v.max():.4f} | "
              f"{math.exp(np.log(v).mean()):.4f} | " + " | ".join(f"{x:.4f}" for x in v) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

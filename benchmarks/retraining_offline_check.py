"""How often the retraining demo's candidate passes its offline check, by what its training window holds.

The demo chapter's run trains on the last `dataWindow` of labelled traffic at the breach: a mix of
pre-downturn applicants (on which the serving version is as good) and downturn ones. This draws such mixes
from the demo's own populations, trains the example trainer's model on 70% of each (a random split, as the
request-id split is), and checks the held-out 30% as the operator does (`maxQualityDrop: 0`, here strictly
better as the chapter requires, and a parity-ratio drop of at most the margin per sensitive feature). Printed,
not asserted: a statistical property of the demo's data, not a timing.

    uv run --frozen python -m benchmarks.retraining_offline_check [--trials 200]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from steward.cli.demo_retraining import downturn
from steward.cli.demo_traffic import Applicant, population
from steward.dev.credit_model import FEATURES, SENSITIVE, applicants, train

MIXES = ((0, 300), (0, 500), (300, 400), (600, 300), (0, 900))  # (pre-downturn rows, downturn rows)
MARGINS = (0.1, 0.2)


def _frame(people: list[Applicant]) -> pd.DataFrame:
    frame = pd.DataFrame([p.record for p in people])
    frame["defaulted"] = [p.defaulted for p in people]
    return frame


def _parity(predicted: np.ndarray, frame: pd.DataFrame) -> dict[str, float]:
    out = {}
    for feature in SENSITIVE:
        groups = pd.DataFrame({"g": frame[feature].to_numpy(), "good": predicted == 0})
        rates = groups.groupby("g")["good"].agg(["mean", "size"])
        rates = rates.loc[rates["size"] >= 10, "mean"]  # the example trainer's minimum group
        if len(rates) >= 2 and rates.max() > 0:
            out[feature] = float(rates.min() / rates.max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    trials = parser.parse_args().trials
    serving = train(applicants(4000, seed=8))  # the demo's serving version (registered with seed 8)
    before, after = _frame(population(3000, 2027, 1.0)), _frame(downturn(3000, seed=2028))
    rng = np.random.default_rng(0)
    for n_before, n_after in MIXES:
        better, passed = 0, dict.fromkeys(MARGINS, 0)
        for _ in range(trials):
            parts = [
                before.sample(n_before, random_state=int(rng.integers(1e9))),
                after.sample(n_after, replace=True, random_state=int(rng.integers(1e9))),
            ]
            labelled = pd.concat(parts, ignore_index=True)
            held = rng.random(len(labelled)) < 0.3
            fit, test = labelled[~held], labelled[held]
            candidate = train(fit)
            ours = candidate.predict(test[FEATURES].astype("float64"))
            theirs = serving.predict(test[FEATURES].astype("float64"))
            wins = (ours == test["defaulted"]).mean() > (theirs == test["defaulted"]).mean()
            ours_p, theirs_p = _parity(ours, test), _parity(theirs, test)
            drop = max(theirs_p.get(k, 0.0) - ours_p.get(k, 0.0) for k in {*ours_p, *theirs_p})
            better += wins
            for margin in MARGINS:
                passed[margin] += wins and drop <= margin
        rates = ", ".join(f"fairness margin {m}: {passed[m] / trials:.2f}" for m in MARGINS)
        print(
            f"{n_before:4d} pre-downturn + {n_after:4d} downturn rows: candidate more accurate "
            f"{better / trials:.2f}; passes the whole check with {rates}"
        )


if __name__ == "__main__":
    main()

"""How often the retraining demo's candidate passes its offline check, by what its training window holds.

The demo chapter's run trains on the last `dataWindow` of labelled traffic at the breach: a mix of
pre-downturn applicants (on which the serving version is as good) and downturn ones. This draws such mixes
from the demo's own populations, trains the example trainer's model on 70% of each (a random split, as the
request-id split is), and checks the held-out 30% as the operator does (`maxQualityDrop: 0`, here strictly
better as the chapter requires, and the parity ratios through the operator's own `evaluate`, with and without
the noise allowance of two standard errors). Printed, not asserted: a statistical property of the demo's data,
not a timing.

    uv run --frozen python -m benchmarks.retraining_offline_check [--trials 200]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from steward.api.monitor_results import CaptureColumn
from steward.api.retraining import OfflineEvaluation
from steward.api.training_job import Figures, TrainingResult
from steward.cli.demo_retraining import downturn
from steward.cli.demo_traffic import Applicant, population
from steward.dev.credit_model import FEATURES, SENSITIVE, applicants, train
from steward.operator.retraining_plan import evaluate
from steward.retraining.example_train import parity_ratios

MIXES = ((0, 300), (0, 500), (300, 400), (600, 300), (0, 900))  # (pre-downturn rows, downturn rows)
# (parity margin, with the noise allowance of NOISE_STANDARD_ERRORS standard errors of the difference)
CHECKS = ((0.1, False), (0.2, False), (0.1, True))


def _frame(people: list[Applicant]) -> pd.DataFrame:
    frame = pd.DataFrame([p.record for p in people])
    frame["defaulted"] = [p.defaulted for p in people]
    return frame


def _figures(predicted: np.ndarray, frame: pd.DataFrame) -> Figures:
    # The example trainer's own figures, on captured-style columns.
    captured = pd.DataFrame({CaptureColumn.SENSITIVE + f: frame[f].to_numpy() for f in SENSITIVE})
    ratios, errors = parity_ratios(captured, predicted, SENSITIVE, "0")
    return Figures(quality={"accuracy": 0.0}, parity_ratio=ratios, parity_ratio_se=errors)


def _passes(ours: Figures, theirs: Figures, margin: float, noise: bool) -> bool:
    """The operator's own evaluation of the parity drops (accuracy is judged apart)."""
    if not noise:
        ours, theirs = ours.model_copy(update={"parity_ratio_se": {}}), theirs
    result = TrainingResult(
        submission_id="s", deployment="d/m", model_name="m", candidate=ours, serving=theirs
    )
    return evaluate(OfflineEvaluation(max_fairness_drop=margin), result).passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    trials = parser.parse_args().trials
    serving = train(applicants(4000, seed=8))  # the demo's serving version (registered with seed 8)
    before, after = _frame(population(3000, 2027, 1.0)), _frame(downturn(3000, seed=2028))
    rng = np.random.default_rng(0)
    for n_before, n_after in MIXES:
        better, passed = 0, dict.fromkeys(CHECKS, 0)
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
            ours_f, theirs_f = _figures(ours, test), _figures(theirs, test)
            better += wins
            for margin, noise in CHECKS:
                passed[(margin, noise)] += wins and _passes(ours_f, theirs_f, margin, noise)
        rates = ", ".join(
            f"parity margin {m}{' + noise' if n else ''}: {passed[(m, n)] / trials:.2f}" for m, n in CHECKS
        )
        print(
            f"{n_before:4d} pre-downturn + {n_after:4d} downturn rows: candidate more accurate "
            f"{better / trials:.2f}; passes the whole check with {rates}"
        )


if __name__ == "__main__":
    main()

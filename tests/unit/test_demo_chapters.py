"""`steward demo --chapter ...`: chapters play in their own order, whatever order they are named in."""

from __future__ import annotations

import pytest

from steward.api.manifests import load_manifests
from steward.cli.demo import CHAPTERS, DEFAULT_CHAPTERS, chapters_from
from steward.cli.demo_monitoring import CHAPTERS as MONITORING_CHAPTERS


@pytest.mark.parametrize(
    ("given", "played"),
    [
        (None, list(DEFAULT_CHAPTERS)),
        ("all", ["rollout", "drift", "fairness", "quality", "retraining"]),
        ("quality,drift", ["drift", "quality"]),
        (" fairness ", ["fairness"]),
        ("rollout,rollout", ["rollout"]),
        ("retraining", ["retraining"]),
        ("retraining,drift", ["drift", "retraining"]),
    ],
)
def test_chosen_chapters_play_in_order(given: str | None, played: list[str]) -> None:
    assert chapters_from(given) == played


@pytest.mark.parametrize("given", ["drfit", "drift,bias", ",", ""])
def test_an_unknown_chapter_is_refused_naming_the_choices(given: str) -> None:
    with pytest.raises(ValueError, match="choose from rollout, drift, fairness, quality"):
        chapters_from(given)


def test_the_retraining_chapter_closes_the_demo_on_the_monitored_scene() -> None:
    # It plays last, on the monitoring chapters' live client (it needs their Scene).
    assert CHAPTERS[-1] == "retraining" and "retraining" in MONITORING_CHAPTERS
    assert DEFAULT_CHAPTERS == CHAPTERS and chapters_from("all") == list(CHAPTERS)


def test_the_retraining_manifest_closes_the_loop_on_drift() -> None:
    from steward.api.monitoring import BreachAction
    from steward.api.retraining import Approval
    from steward.cli.demo_retraining import RETRAINING, downturn

    (md,) = load_manifests(RETRAINING)
    assert md.spec.retraining is not None and md.spec.retraining.approval == Approval.MANUAL
    drift = next(m for m in md.spec.monitoring.monitors if m.name == "drift")
    assert drift.on_breach == BreachAction.RETRAIN
    assert md.spec.model.alias == "champion" and md.spec.rollout.analysis.require_monitors == ["fairness"]
    # The canary's fairness gate is judged against stable; its absolute floor only catches the grossly
    # unfair, on groups large enough that a fair candidate does not fall below it by chance.
    fairness = next(m for m in md.spec.monitoring.monitors if m.name == "fairness").fairness
    assert fairness is not None and fairness.max_worse_than_stable is not None
    assert fairness.min_demographic_parity_ratio <= 0.5 and fairness.min_group_size >= 30
    people = downturn(200, seed=1)
    assert len(people) == 200 and people == downturn(200, seed=1)  # deterministic
    assert {p.defaulted for p in people} == {0, 1}

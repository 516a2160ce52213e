"""`steward demo --chapter ...`: chapters play in their own order, whatever order they are named in."""

from __future__ import annotations

import pytest

from steward.cli.demo import CHAPTERS, chapters_from


@pytest.mark.parametrize(
    ("given", "played"),
    [
        (None, list(CHAPTERS)),
        ("all", ["rollout", "drift", "fairness", "quality"]),
        ("quality,drift", ["drift", "quality"]),
        (" fairness ", ["fairness"]),
        ("rollout,rollout", ["rollout"]),
    ],
)
def test_chosen_chapters_play_in_order(given: str | None, played: list[str]) -> None:
    assert chapters_from(given) == played


@pytest.mark.parametrize("given", ["drfit", "drift,bias", ",", ""])
def test_an_unknown_chapter_is_refused_naming_the_choices(given: str) -> None:
    with pytest.raises(ValueError, match="choose from rollout, drift, fairness, quality"):
        chapters_from(given)

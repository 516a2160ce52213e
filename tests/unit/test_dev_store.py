"""The local file store: what the CLI writes survives the loop writing status at the same time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from steward.api.conditions import Phase
from steward.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from steward.dev.store import LocalStore

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def manifest() -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": "scorer",
                "namespace": "lending",
                "annotations": {"steward.io/actor": "carol"},
            },
            "spec": {"model": {"name": "credit-risk", "version": "1"}},
        }
    )


def test_status_written_after_a_delete_keeps_the_deleters_annotations(tmp_path: Path) -> None:
    """The loop read the object (carol's annotations), then `steward dev delete` stamped dave's, then the loop
    wrote its status: the deletion record must still name dave."""
    store = LocalStore(tmp_path)
    store.apply(manifest())
    read_by_loop = store.admit(manifest(), NOW)
    assert store.remove(
        "lending", "scorer", {"steward.io/actor": "dave", "steward.io/change-reason": "retired"}
    )
    store.set_status("lending", "scorer", ModelDeploymentStatus(phase=Phase.READY))
    stored = store.get("lending", "scorer")
    assert stored is not None and stored.status.phase == Phase.READY
    assert stored.annotations["steward.io/actor"] == "dave"
    assert read_by_loop.annotations["steward.io/actor"] == "carol"


def test_status_for_a_forgotten_object_is_dropped(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.set_status("lending", "gone", ModelDeploymentStatus())
    assert store.get("lending", "gone") is None

"""The local control loop paces and backs off as the operator's per-object loop does (shared next_pass)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steward.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from steward.dev.loop import ControlLoop
from steward.dev.store import LocalStore
from steward.operator.config import OperatorConfig
from steward.operator.core import Decision

T0 = datetime(2026, 11, 23, tzinfo=UTC)


def manifest(version: str = "1") -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "scorer", "namespace": "lending"},
            "spec": {"model": {"name": "credit-risk", "version": version}},
        }
    )


class Failing:
    """A reconciler whose every pass hits a temporary problem."""

    config = OperatorConfig(resync_interval_s=15.0, retry_max_delay_s=8.0)

    def __init__(self) -> None:
        self.passes: list[datetime] = []

    def reconcile(self, md: ModelDeployment, now: datetime, events: Any) -> Decision:
        self.passes.append(now)
        status = ModelDeploymentStatus(observed_generation=md.metadata.generation)
        return Decision(status, [], retry_reason="Ray is unreachable")


def test_retries_back_off_exponentially_with_the_draw_and_a_spec_change_passes_at_once(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.apply(manifest())
    reconciler = Failing()
    clock = [T0]
    loop = ControlLoop(store, reconciler, clock=lambda: clock[0], draw=lambda: 0.5)  # type: ignore[arg-type]
    for _ in range(40):  # one tick a second for 40 s
        loop.tick()
        clock[0] += timedelta(seconds=1)
    gaps = [(b - a).total_seconds() for a, b in zip(reconciler.passes, reconciler.passes[1:], strict=False)]
    # 0.5 * (1, 2, 4, 8, 8, ...) seconds, rounded up to the loop's one-second tick.
    assert gaps[:6] == [1, 1, 2, 4, 4, 4]

    before = len(reconciler.passes)
    store.apply(manifest("2"))  # a new generation is acted on at once, whatever the backoff
    loop.tick()
    assert len(reconciler.passes) == before + 1

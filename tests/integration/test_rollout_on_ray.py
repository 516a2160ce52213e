"""Progressive delivery on real Ray Serve, under a steady request load, driven by the local control loop.

A healthy version is promoted through every step with zero failed requests; a version that errors on a share
of its inputs and one that is slow are rolled back by themselves while stable keeps serving; a shadow rollout
records the challenger's answers without returning them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from helpers import applicant_records, wait_gone, wait_until

from steward.api.model_deployment import ModelDeployment
from steward.api.serve_app import (
    SHADOW_PATH,
    STATS_PATH,
    ShadowLog,
    TrafficStats,
    router_access,
    router_secret_from_ray_token,
)
from steward.audit.store import LocalFolderStore
from steward.dev.loop import ControlLoop
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject
from steward.operator.reconciler import Reconciler

pytestmark = pytest.mark.integration
NS, NAME = "lending", "canary"


@dataclass
class Answer:
    at: float
    status: int
    version: str | None


class Load:
    """A steady stream of scoring requests from a few threads, keeping every answer."""

    def __init__(self, url: str, workers: int = 3) -> None:
        self.url = url
        self.answers: list[Answer] = []
        self.records = applicant_records(50, seed=5)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                records = [rng.choice(self.records)]
                headers = {"X-Customer-Id": f"c{rng.randrange(1000)}"}
                try:
                    response = http.post(self.url, json={"dataframe_records": records}, headers=headers)
                    version = response.headers.get("X-Model-Version")
                    self.answers.append(Answer(time.monotonic(), response.status_code, version))
                except httpx.HTTPError:
                    self.answers.append(Answer(time.monotonic(), 0, None))
                time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]


@pytest.fixture(scope="module")
def loop(stack: Stack, tmp_path_factory: pytest.TempPathFactory, ray_client: Any) -> Iterator[LocalStore]:
    config = replace(stack.operator_config(resync_interval_s=1.0), rollout_tick_s=1.0, rollout_drain_s=1.0)
    reconciler = Reconciler(config, ray_token=stack.ray_token())
    store = LocalStore(tmp_path_factory.mktemp("rollout-home"))
    control = ControlLoop(store, reconciler)
    stop = threading.Event()
    thread = threading.Thread(target=control.run, args=(0.5, stop), daemon=True)
    thread.start()
    yield store
    store.remove(NS, NAME)
    wait_until(lambda: store.get(NS, NAME) is None, 60, "the deployment to be finalized")
    wait_gone(ray_client, f"{NS}.{NAME}")
    stop.set()
    thread.join(10)
    reconciler.close()


@dataclass(frozen=True)
class Versions:
    good1: str
    good2: str
    erroring: str
    slow: str
    challenger: str


@pytest.fixture(scope="module")
def versions(stack: Stack, models: Any) -> Versions:
    from steward.dev.credit_model import register, register_faulty

    return Versions(
        good1=models.good_v1,
        good2=models.good_v2,
        erroring=register_faulty(stack.tracking_uri, "credit-risk", error_share=0.3, n=1000, seed=11),
        slow=register_faulty(stack.tracking_uri, "credit-risk", delay_ms=250, n=1000, seed=12),
        challenger=register(stack.tracking_uri, "credit-risk", n=1000, seed=13),
    )


# A p95 of ten-odd requests on a shared test machine jumps by tens of ms: tolerate that much above stable's
# (the slow version adds 250 ms and still fails); the default thresholds are tested in test_analysis_gates.py.
NOISY_LATENCY = {"latencyToleranceMs": 60}
CANARY = {
    "steps": [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 60}, {"analysis": {}}],
    "analysis": {"interval": "5s", "minRequests": 10, **NOISY_LATENCY},
    "stickiness": {"header": "X-Customer-Id"},
}


def apply(store: LocalStore, version: str, rollout: dict[str, Any] = CANARY) -> None:
    store.apply(
        ModelDeployment.model_validate(
            {
                "apiVersion": "steward.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": NAME, "namespace": NS, "annotations": {"steward.io/actor": "mo@bank"}},
                "spec": {
                    "model": {"name": "credit-risk", "version": version},
                    "serving": {"resources": {"cpu": 0.25}},
                    "rollout": rollout,
                },
            }
        )
    )


def current(store: LocalStore) -> StoredObject:
    obj = store.get(NS, NAME)
    assert obj is not None
    return obj


def finished(store: LocalStore, count: int) -> StoredObject | None:
    obj = store.get(NS, NAME)
    return (
        obj
        if obj is not None and len(obj.status.rollout_history) >= count and not obj.status.rollout
        else None
    )


def condition(obj: StoredObject, type_: str) -> Any:
    return next(c for c in obj.status.conditions if c.type.value == type_)


def read_auth(stack: Stack) -> dict[str, str]:
    """The read token the control loop derives from the Ray token for this deployment."""
    token = router_access(router_secret_from_ray_token(stack.ray_token()), f"{NS}/{NAME}").read_token
    return {"Authorization": f"Bearer {token}"}


def answered_in_router(endpoint: str, stack: Stack, version: str) -> int:
    response = httpx.get(endpoint + STATS_PATH, headers=read_auth(stack), timeout=10)
    assert response.status_code == 200, response.text
    stats = TrafficStats.model_validate_json(response.content)
    assert stats.in_router is None or stats.in_router.load_failures == 0, stats.in_router.last_error
    return 0 if stats.in_router is None else stats.in_router.answered.get(version, 0)


def wait_served_in_router(endpoint: str, stack: Stack, version: str) -> None:
    """The stable version's model is loaded in the router in the background after the rollout ends; until
    then its application answers. Poll with requests until the router's own copy answers one."""
    before = answered_in_router(endpoint, stack, version)
    record = applicant_records(1, seed=3)

    def served_in_router() -> bool:
        response = httpx.post(endpoint, json={"dataframe_records": record}, timeout=30)
        assert response.status_code == 200 and response.headers["X-Model-Version"] == version
        return answered_in_router(endpoint, stack, version) > before

    wait_until(served_in_router, 180, f"version {version} answered in the router", interval_s=0.5)


@pytest.fixture(scope="module")
def endpoint(loop: LocalStore, versions: Versions) -> str:
    apply(loop, versions.good1)
    obj = wait_until(
        lambda: (o := loop.get(NS, NAME)) and o.status.phase.value == "Ready" and o, 180, "version 1 Ready"
    )
    return str(obj.status.endpoint)


def test_a_healthy_version_is_promoted_through_every_step_with_no_failed_request(
    loop: LocalStore, endpoint: str, versions: Versions, stack: Stack, ray_client: Any
) -> None:
    with Load(endpoint) as load:
        time.sleep(2)
        apply(loop, versions.good2)
        seen_weights: set[int] = set()

        def promoted() -> StoredObject | None:
            obj = loop.get(NS, NAME)
            if obj is not None and obj.status.rollout is not None:
                seen_weights.add(obj.status.rollout.weight)
            return finished(loop, 1)

        obj = wait_until(promoted, 240, "version 2 to be promoted")
        time.sleep(2)
    assert load.failed() == [], f"{len(load.failed())} of {len(load.answers)} requests failed"
    assert len(load.answers) > 200
    assert {20, 60} <= seen_weights
    record = obj.status.rollout_history[-1]
    assert (record.from_version, record.to_version, record.outcome.value) == (
        versions.good1,
        versions.good2,
        "Promoted",
    )
    assert obj.status.stable is not None and obj.status.stable.version == versions.good2
    served = [a.version for a in load.answers]
    assert versions.good1 in served and versions.good2 in served
    assert set(served[-20:]) == {versions.good2}
    wait_gone(ray_client, f"{NS}.{NAME}.v{versions.good1}")
    wait_served_in_router(endpoint, stack, versions.good2)
    trail = [r.action.value for r in LocalFolderStore(stack.home / "audit").read(f"{NS}/{NAME}")]
    assert trail[trail.index("rollout-started") :] == [
        "rollout-started",
        "rollout-step",
        "analysis-verdict",
        "rollout-step",
        "analysis-verdict",
        "promoted",
    ]


@pytest.mark.parametrize(
    ("kind", "measurement"), [("erroring", "error rate"), ("slow", "latency p95")], ids=["errors", "slow"]
)
def test_a_bad_version_is_rolled_back_while_stable_keeps_serving(
    loop: LocalStore,
    endpoint: str,
    versions: Versions,
    kind: str,
    measurement: str,
    ray_client: Any,
    stack: Stack,
) -> None:
    bad = getattr(versions, kind)
    done_before = len(current(loop).status.rollout_history)
    with Load(endpoint) as load:
        apply(loop, bad)
        obj = wait_until(
            lambda: finished(loop, done_before + 1), 240, f"the {kind} version to be rolled back"
        )
        time.sleep(2)
    record = obj.status.rollout_history[-1]
    assert (record.to_version, record.outcome.value) == (bad, "RolledBack")
    assert measurement in record.reason
    assert obj.status.stable is not None and obj.status.stable.version == versions.good2
    degraded = condition(obj, "Degraded")
    assert degraded.status.value == "True" and measurement in degraded.message
    assert condition(obj, "Ready").status.value == "True"
    # Stable answered every request it got; only the bad version's own answers failed.
    assert all(a.status == 200 for a in load.answers if a.version == versions.good2)
    assert all(a.version == bad for a in load.failed()), load.failed()[:5]
    assert [a.version for a in load.answers[-20:]] == [versions.good2] * 20
    wait_gone(ray_client, f"{NS}.{NAME}.v{bad}")
    # Stable left the router while the canary was judged, and is back in it.
    wait_served_in_router(endpoint, stack, versions.good2)


def test_shadow_rollout_records_the_challengers_answers_and_never_returns_them(
    loop: LocalStore, endpoint: str, versions: Versions, stack: Stack
) -> None:
    done_before = len(current(loop).status.rollout_history)
    shadow = {
        "strategy": "shadow",
        "steps": [{"analysis": {}}],
        # About answers, not speed: the shadow's cold first calls on a loaded machine must not decide it.
        "analysis": {"interval": "5s", "minRequests": 10, "maxDisagreement": 0.5, "latencyToleranceMs": 5000},
    }
    auth = read_auth(stack)
    with Load(endpoint) as load:
        apply(loop, versions.challenger, shadow)
        wait_until(
            lambda: (r := current(loop).status.rollout) is not None and r.state.value == "Progressing",
            180,
            "the challenger to be warm",
        )
        log = wait_until(
            lambda: (
                (
                    s := ShadowLog.model_validate_json(
                        httpx.get(endpoint + SHADOW_PATH, headers=auth, timeout=10).content
                    )
                ).pairs
                and s
            ),
            60,
            "shadow pairs",
        )
        obj = wait_until(lambda: finished(loop, done_before + 1), 180, "the shadow rollout to finish")
    pair = log.pairs[-1]
    assert (pair.primary_version, pair.shadow_version) == (versions.good2, versions.challenger)
    assert pair.shadow_status == 200 and isinstance(pair.shadow, list)
    record = obj.status.rollout_history[-1]
    assert record.outcome.value == "Promoted", record.reason
    # Until the switch, callers only ever got stable's answers.
    answers = sorted(load.answers, key=lambda a: a.at)
    switch_at = next((i for i, a in enumerate(answers) if a.version == versions.challenger), len(answers))
    assert switch_at > 50 and {a.version for a in answers[:switch_at]} == {versions.good2}
    assert load.failed() == []

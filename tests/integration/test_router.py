"""The router over real HTTP on real Ray Serve: weights applied in place, sticky callers, shadow traffic and
the per-version figures behind `/-/stats`.

One router application and its version applications serve every test here; each test only changes the router's
user_config (about two seconds), because deploying a version application costs tens of seconds on two cores.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from helpers import applicant_records, expected_classes, wait_until

from steward.adapters.ray_serve import RayServeClient
from steward.api.model_deployment import ModelDeployment
from steward.api.monitoring import MonitoringSpec
from steward.api.rollout import Stickiness
from steward.api.serve_app import (
    LATENCY_BUCKETS_MS,
    RECORDER_DEPLOYMENT,
    ROUTER_DEPLOYMENT,
    RouterAccess,
    ShadowConfig,
    ShadowLog,
    TrafficStats,
    router_access,
    sticky_key_hash,
    version_app_name,
    version_deployment_name,
)
from steward.dev.credit_model import FEATURES, fails_on, register_faulty
from steward.dev.stack import Stack
from steward.operator.config import OperatorConfig
from steward.operator.reconciler import with_router_secret
from steward.operator.serve_config import TrafficPlan, app_name, plan_serve_apps
from steward.serving.app import WARMUP_ANSWERS
from steward.serving.capture import keyed_hash
from steward.serving.scoring import MAX_BODY_BYTES
from steward.serving.traffic import choose_version

pytestmark = pytest.mark.integration

ERROR_SHARE = 0.3
DELAY_MS = 150.0
FAULTY_MODEL = "credit-risk-faulty"


@pytest.fixture(scope="module")
def model_uris(stack: Stack, models: Any) -> dict[str, str]:
    """Router version label -> model URI. 3 is version 1's model failing on 30% of rows, 4 is it, slow."""
    faulty = register_faulty(stack.tracking_uri, FAULTY_MODEL, error_share=ERROR_SHARE, n=2000, seed=7)
    slow = register_faulty(stack.tracking_uri, FAULTY_MODEL, delay_ms=DELAY_MS, n=2000, seed=7)
    return {
        "1": f"models:/credit-risk/{models.good_v1}",
        "2": f"models:/credit-risk/{models.good_v2}",
        "3": f"models:/{FAULTY_MODEL}/{faulty}",
        "4": f"models:/{FAULTY_MODEL}/{slow}",
    }


@dataclass
class Serving:
    stack: Stack
    client: RayServeClient
    uris: dict[str, str]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))
    deployed: set[str] = field(default_factory=set)
    last_plan: TrafficPlan | None = None

    md = ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "router", "namespace": "it", "generation": 1},
            "spec": {
                "model": {"name": "credit-risk", "version": "1"},
                "serving": {"resources": {"cpu": 0.25}, "replicas": {"min": 1, "max": 1}},
            },
        }
    )

    @property
    def router_app(self) -> str:
        return app_name(self.md)

    @property
    def url(self) -> str:
        return f"{self.stack.serve_url}/it/router"

    @property
    def config(self) -> OperatorConfig:
        """The operator's config with the router secret the control loop derives from the Ray token."""
        return with_router_secret(self.stack.operator_config(), self.stack.ray_token())

    @property
    def access(self) -> RouterAccess:
        assert self.config.router_secret is not None
        return router_access(self.config.router_secret, self.md.key)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access.read_token}"}

    def route(
        self,
        versions: set[str],
        weights: dict[str, int],
        shadow: ShadowConfig | None = None,
        stickiness: Stickiness | None = None,
        stable: str | None = None,
    ) -> None:
        """Deploy `versions` (keeping any already deployed: removing one is not what these tests look at) and
        point the router at them; return once the router answers with this config."""
        plan = TrafficPlan(
            versions={v: self.uris[v] for v in sorted(versions | self.deployed)},
            weights=weights,
            shadow=shadow,
            stickiness=stickiness,
            # None: every version through its handle, the path most of these tests look at.
            stable=stable,
        )
        if plan == self.last_plan:
            return
        config = self.config
        self.client.apply_applications(
            plan_serve_apps(self.md, "credit-risk", plan, config), set(), config.http_options
        )
        self.deployed |= set(plan.versions)
        self.last_plan = plan
        apps = {self.router_app} | {version_app_name(self.router_app, v) for v in plan.versions}
        wanted = {
            "weights": weights,
            "shadow": None if shadow is None else shadow.model_dump(mode="json"),
            "stickiness": None
            if stickiness is None
            else stickiness.model_dump(by_alias=True, exclude_none=True),
        }

        def ready() -> dict[str, str] | None:
            statuses = {name: app.status for name, app in self.client.applications().items() if name in apps}
            if statuses != dict.fromkeys(apps, "RUNNING"):
                return None
            meta = self.http.get(self.url, headers=self.auth).json()
            return statuses if {k: meta.get(k) for k in wanted} == wanted else None

        wait_until(ready, 300, f"{sorted(apps)} running with {wanted}", interval_s=1)

    def replica_ids(self, app: str, deployment: str) -> set[str]:
        raw = self.client.instance()["applications"][app]["deployments"][deployment]["replicas"]
        return {r["replica_id"] for r in raw}

    def version_replicas(self, versions: set[str]) -> dict[str, set[str]]:
        return {
            v: self.replica_ids(version_app_name(self.router_app, v), version_deployment_name(v))
            for v in sorted(versions)
        }

    def predict(self, record: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(self.url, json={"dataframe_records": [record]}, headers=headers)

    def predict_all(
        self, records: list[dict[str, Any]], headers: list[dict[str, str]] | None = None
    ) -> list[httpx.Response]:
        heads = headers or [{} for _ in records]
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(self.predict, records, heads))

    def stats(self) -> TrafficStats:
        response = self.http.get(f"{self.url}/-/stats", headers=self.auth)
        assert response.status_code == 200, response.text
        return TrafficStats.model_validate(response.json())

    def shadow_log(self, limit: int) -> ShadowLog:
        response = self.http.get(f"{self.url}/-/shadow", params={"limit": limit}, headers=self.auth)
        assert response.status_code == 200, response.text
        return ShadowLog.model_validate(response.json())


@pytest.fixture(scope="module")
def serving(stack: Stack, ray_client: RayServeClient, model_uris: dict[str, str]) -> Iterator[Serving]:
    serving = Serving(stack, ray_client, model_uris)
    yield serving
    names = {serving.router_app} | {version_app_name(serving.router_app, v) for v in serving.deployed}
    ray_client.delete_applications(names, stack.operator_config().http_options)
    serving.http.close()


def declare_oversized_body(url: str) -> tuple[int, str]:
    """POST that declares a body over the limit and sends one byte of it: the answer must come without the
    rest (a router that read the body whole would wait for bytes that never come, and time out)."""
    parsed = httpx.URL(url)
    conn = http.client.HTTPConnection(parsed.host, parsed.port, timeout=60)
    try:
        conn.putrequest("POST", parsed.raw_path.decode())
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders(b"{")
        response = conn.getresponse()
        return response.status, json.loads(response.read())["error"]["code"]
    finally:
        conn.close()


def version_of(response: httpx.Response) -> str:
    return response.headers["x-model-version"]


def delta(before: TrafficStats, after: TrafficStats, kind: str, version: str) -> dict[str, Any]:
    """What one version's figures grew by between two reads of the same recorder."""
    assert after.recorder_id == before.recorder_id, "the recorder restarted during the test"
    old, new = getattr(before, kind).get(version), getattr(after, kind).get(version)
    if new is None:
        return {"requests": 0, "errors": 0, "rejected": 0, "buckets": [0] * (len(LATENCY_BUCKETS_MS) + 1)}
    old_buckets = old.latency_ms_buckets if old else [0] * len(new.latency_ms_buckets)
    return {
        "requests": new.requests - (old.requests if old else 0),
        "errors": new.errors - (old.errors if old else 0),
        "rejected": new.rejected - (old.rejected if old else 0),
        "buckets": [n - o for n, o in zip(new.latency_ms_buckets, old_buckets, strict=True)],
    }


def pair_delta(before: TrafficStats, after: TrafficStats, version: str) -> tuple[int, int]:
    old, new = before.pairs.get(version), after.pairs.get(version)
    if new is None:
        return (0, 0)
    return (new.compared - (old.compared if old else 0), new.disagreed - (old.disagreed if old else 0))


def stats_once(serving: Serving, done: Any, what: str) -> TrafficStats:
    """Mirrored calls finish after their callers' answers and reach the recorder within a flush: poll."""

    def check() -> TrafficStats | None:
        stats = serving.stats()
        return stats if done(stats) else None

    result: TrafficStats = wait_until(check, 30, what)
    return result


def failing(records: list[dict[str, Any]], share: float) -> list[bool]:
    return [fails_on([r[f] for f in FEATURES], share) for r in records]


# ------------------------------------------------------------------------------------------------- weights


def test_weights_move_in_place_and_split_traffic(serving: Serving, stack: Stack, models: Any) -> None:
    serving.route({"1", "2"}, {"1": 100, "2": 0})
    records = applicant_records(400, seed=11)
    answers = serving.predict_all(records[:100])
    assert {(a.status_code, version_of(a)) for a in answers} == {(200, "1")}
    replicas_before = serving.version_replicas({"1", "2"})
    router_before = serving.replica_ids(serving.router_app, ROUTER_DEPLOYMENT)
    stats_before = serving.stats()

    serving.route({"1", "2"}, {"1": 70, "2": 30})
    answers = serving.predict_all(records)

    # Applied in place: neither a model replica nor the router replica was replaced.
    assert serving.version_replicas({"1", "2"}) == replicas_before
    assert serving.replica_ids(serving.router_app, ROUTER_DEPLOYMENT) == router_before
    assert all(a.status_code == 200 for a in answers)
    versions = [version_of(a) for a in answers]
    assert [a.json()["model"]["version"] for a in answers] == versions
    share = versions.count("2") / len(versions)
    assert share == pytest.approx(0.30, abs=0.08), Counter(versions)
    # Each answer is the named version's own prediction, not just its label.
    expected = {v: expected_classes(stack.tracking_uri, getattr(models, f"good_v{v}"), records) for v in "12"}
    assert [a.json()["predictions"][0] for a in answers] == [expected[v][i] for i, v in enumerate(versions)]
    # The router counted exactly what the callers saw.
    stats_after = serving.stats()
    for version in ("1", "2"):
        assert delta(stats_before, stats_after, "live", version)["requests"] == versions.count(version)
    print(f"observed split at 70/30 over {len(versions)} requests: {Counter(versions)}")


def test_bad_input_is_refused_with_a_code_and_counted_as_rejected(serving: Serving) -> None:
    serving.route({"1", "2"}, {"1": 100})
    before = serving.stats()
    malformed = serving.http.post(serving.url, content=b'{"dataframe_records": [', headers={"x": "y"})
    missing_column = serving.http.post(serving.url, json={"dataframe_records": [{"income": 1.0}]})
    wrong_method = serving.http.put(serving.url, json={})
    bad_limit = serving.http.get(f"{serving.url}/-/shadow", params={"limit": "all"}, headers=serving.auth)
    unknown = serving.http.get(f"{serving.url}/-/nothing", headers=serving.auth)
    anonymous = [serving.http.get(f"{serving.url}{path}") for path in ("", "/-/stats", "/-/shadow", "/-/x")]
    oversized = declare_oversized_body(serving.url)
    after = serving.stats()

    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "MALFORMED_JSON")
    assert (missing_column.status_code, missing_column.json()["error"]["code"]) == (422, "INVALID_INPUT")
    assert {"column": "debt_ratio", "problem": "missing"} in missing_column.json()["error"]["details"]
    assert {(r.status_code, r.json()["error"]["code"]) for r in anonymous} == {(401, "UNAUTHORIZED")}
    assert oversized == (413, "PAYLOAD_TOO_LARGE")
    assert version_of(missing_column) == "1"
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")
    assert (bad_limit.status_code, bad_limit.json()["error"]["code"]) == (400, "INVALID_QUERY")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "NOT_FOUND")
    # Only the request that reached a version counts, as a rejection, not as the version's error.
    live = delta(before, after, "live", "1")
    assert (live["requests"], live["errors"], live["rejected"]) == (1, 0, 1)


# -------------------------------------------------------------------------------------------------- sticky


def test_sticky_callers_keep_their_version_as_the_new_weight_grows(serving: Serving) -> None:
    sticky = Stickiness(header="X-Customer-Id")
    keys = [f"customer-{i}" for i in range(50)]
    records = applicant_records(50, seed=12)
    placement: dict[int, dict[str, str]] = {}
    for new_weight in (10, 50):
        weights = {"1": 100 - new_weight, "2": new_weight}
        serving.route({"1", "2"}, weights, stickiness=sticky)
        heads = [{"X-Customer-Id": k} for k in keys] * 5
        answers = serving.predict_all(records * 5, heads)
        assert all(a.status_code == 200 for a in answers)
        seen: dict[str, set[str]] = {}
        for head, answer in zip(heads, answers, strict=True):
            seen.setdefault(head["X-Customer-Id"], set()).add(version_of(answer))
        assert all(len(v) == 1 for v in seen.values()), {k: v for k, v in seen.items() if len(v) > 1}
        placement[new_weight] = {k: next(iter(v)) for k, v in seen.items()}
        # The same buckets as the pure function's: sha256 of the key, the same in every router replica.
        assert placement[new_weight] == {k: choose_version(weights, k, 0.0) for k in keys}

    on_new_at_10 = {k for k, v in placement[10].items() if v == "2"}
    assert on_new_at_10, "no key landed on the new version at 10%: the check below would be empty"
    assert {k for k in on_new_at_10 if placement[50][k] != "2"} == set()
    moved = sum(placement[10][k] == "1" and placement[50][k] == "2" for k in keys)
    print(f"sticky: {len(on_new_at_10)} of 50 keys on v2 at 10%, {moved} more moved to v2 at 50%")


def test_sticky_by_input_field(serving: Serving) -> None:
    weights = {"1": 50, "2": 50}
    serving.route({"1", "2"}, weights, stickiness=Stickiness(field="customer_id"))
    records = [{**r, "customer_id": f"c{i}"} for i, r in enumerate(applicant_records(20, seed=13))]
    answers = serving.predict_all(records * 3)
    assert all(a.status_code == 200 for a in answers)
    seen: dict[str, set[str]] = {}
    for record, answer in zip(records * 3, answers, strict=True):
        seen.setdefault(record["customer_id"], set()).add(version_of(answer))
    assert {k: v.pop() for k, v in seen.items() if len(v) == 1} == {
        r["customer_id"]: choose_version(weights, r["customer_id"], 0.0) for r in records
    }


# ----------------------------------------------------------------------------------- adding a version


def test_adding_versions_restarts_no_replica_of_the_others(serving: Serving) -> None:
    if serving.deployed & {"3", "4"}:
        pytest.skip("versions 3 and 4 are already deployed (tests run out of order)")
    serving.route({"1", "2"}, {"1": 100})
    before = serving.version_replicas({"1", "2"})
    router_before = serving.replica_ids(serving.router_app, ROUTER_DEPLOYMENT)
    recorder_before = serving.replica_ids(serving.router_app, RECORDER_DEPLOYMENT)

    serving.route({"1", "2", "3", "4"}, {"1": 100})

    assert serving.version_replicas({"1", "2"}) == before
    assert serving.replica_ids(serving.router_app, ROUTER_DEPLOYMENT) == router_before
    assert serving.replica_ids(serving.router_app, RECORDER_DEPLOYMENT) == recorder_before


# -------------------------------------------------------------------------------------------------- shadow


def test_shadow_answers_are_compared_and_never_returned(serving: Serving, stack: Stack, models: Any) -> None:
    # A sticky header only to tag each pair with its request; with one live version it routes nothing.
    serving.route(
        {"1", "2"},
        {"1": 100},
        shadow=ShadowConfig(version="2", percent=100),
        stickiness=Stickiness(header="X-Request-Id"),
    )
    records = applicant_records(60, seed=14)
    before = serving.stats()
    started = time.time()
    answers = serving.predict_all(records, [{"X-Request-Id": str(i)} for i in range(len(records))])
    assert {(a.status_code, version_of(a), a.json()["model"]["version"]) for a in answers} == {
        (200, "1", "1")
    }

    after = stats_once(serving, lambda s: pair_delta(before, s, "2")[0] >= len(records), "shadow pairs of v2")
    assert delta(before, after, "shadow", "2")["requests"] == len(records)
    assert delta(before, after, "live", "2")["requests"] == 0
    pairs = [p for p in serving.shadow_log(500).pairs if p.at >= started]
    # Pairs keep a keyed hash of the sticky key; whoever holds the operator secret can match it to callers.
    request_of = {sticky_key_hash(serving.access.pseudonym_key, str(i)): i for i in range(len(records))}
    assert sorted(request_of.get(p.sticky_key_hash or "", -1) for p in pairs) == list(range(len(records)))
    v1 = expected_classes(stack.tracking_uri, models.good_v1, records)
    v2 = expected_classes(stack.tracking_uri, models.good_v2, records)
    for pair in pairs:
        i = request_of[pair.sticky_key_hash or ""]
        assert (pair.primary_version, pair.shadow_version, pair.shadow_status) == ("1", "2", 200)
        assert (pair.primary, pair.shadow) == ([v1[i]], [v2[i]])
        assert pair.agree == (v1[i] == v2[i])
    disagreements = sum(a != b for a, b in zip(v1, v2, strict=True))
    assert pair_delta(before, after, "2") == (len(records), disagreements)
    print(f"shadow v2: {len(pairs)} pairs compared, {disagreements} disagreed")


def test_a_failing_shadow_never_reaches_the_caller(serving: Serving) -> None:
    serving.route({"1", "3"}, {"1": 100}, shadow=ShadowConfig(version="3", percent=100))
    records = applicant_records(100, seed=15)
    fails = failing(records, ERROR_SHARE)
    before = serving.stats()
    started = time.time()
    answers = serving.predict_all(records)
    assert {(a.status_code, version_of(a)) for a in answers} == {(200, "1")}

    after = stats_once(serving, lambda s: pair_delta(before, s, "3")[0] >= len(records), "shadow pairs of v3")
    shadow = delta(before, after, "shadow", "3")
    assert (shadow["requests"], shadow["errors"]) == (len(records), sum(fails))
    # Version 3 is version 1's model: it disagrees exactly where it fails.
    assert pair_delta(before, after, "3") == (len(records), sum(fails))
    failed_pairs = [p for p in serving.shadow_log(500).pairs if p.at >= started and not p.agree]
    assert len(failed_pairs) == sum(fails)
    print(f"failing shadow v3: {sum(fails)} of {len(records)} mirrored calls failed, callers saw none")
    assert all(p.shadow_status == 500 for p in failed_pairs)
    assert all(p.shadow["error"]["code"] == "MODEL_ERROR" for p in failed_pairs)  # type: ignore[index]


def test_a_slow_shadow_does_not_slow_the_caller(serving: Serving) -> None:
    serving.route({"1", "4"}, {"1": 100}, shadow=ShadowConfig(version="4", percent=100))
    records = applicant_records(20, seed=16)
    before = serving.stats()
    elapsed_ms = []
    for record in records:
        started = time.perf_counter()
        answer = serving.predict(record)
        elapsed_ms.append((time.perf_counter() - started) * 1000)
        assert (answer.status_code, version_of(answer)) == (200, "1")
    after = stats_once(
        serving, lambda s: delta(before, s, "shadow", "4")["requests"] >= len(records), "shadow calls to v4"
    )
    # Every mirrored call took longer than the model's sleep; the callers did not wait for them.
    assert sum(delta(before, after, "shadow", "4")["buckets"][: LATENCY_BUCKETS_MS.index(DELAY_MS) + 1]) == 0
    assert statistics.median(elapsed_ms) < DELAY_MS, elapsed_ms
    print(
        f"slow shadow v4: caller median {statistics.median(elapsed_ms):.0f} ms, max {max(elapsed_ms):.0f} ms"
    )


# ---------------------------------------------------------------------------------------------- in-router


def in_router_answers(stats: TrafficStats, version: str) -> int:
    return 0 if stats.in_router is None else stats.in_router.answered.get(version, 0)


def loaded_in_router(serving: Serving, loads: int, what: str) -> TrafficStats:
    """The router loads in the background (seconds on two cores, more under load): poll its load count."""

    def check() -> TrafficStats | None:
        stats = serving.stats()
        return stats if stats.in_router is not None and stats.in_router.loads >= loads else None

    result: TrafficStats = wait_until(check, 180, what, interval_s=0.5)
    return result


def answer_all(serving: Serving, records: list[dict[str, Any]]) -> tuple[Counter[str], TrafficStats]:
    """Predict every record (all must be answered) and return who answered and the figures after."""
    answers = serving.predict_all(records)
    assert [a.status_code for a in answers] == [200] * len(records), [a.text for a in answers[:3]]
    for answer in answers:
        assert answer.json()["model"]["version"] == version_of(answer)
    return Counter(version_of(a) for a in answers), serving.stats()


def test_stable_is_answered_in_the_router_through_a_canary_a_rollback_and_a_promotion(
    serving: Serving,
) -> None:
    """Stable is answered from the router's own copy, without a hop, also while a canary is judged (the
    canary goes through its own application; the analysis judges each version's model time); a rollback
    keeps stable's copy; a promotion loads the new stable and drops the old one. The per-version figures the
    analysis reads count every path."""
    records = applicant_records(120, seed=23)
    serving.route({"1", "2"}, {"1": 100, "2": 0}, stable="1")
    before = loaded_in_router(serving, 1, "version 1 loaded in the router")
    assert before.in_router is not None and before.in_router.load_failures == 0, before.in_router
    loads = before.in_router.loads
    served, after = answer_all(serving, records)
    assert served == {"1": len(records)}
    assert in_router_answers(after, "1") - in_router_answers(before, "1") == len(records), "no hop taken"
    assert delta(before, after, "live", "1")["requests"] == len(records)
    # Bad input is answered as the version application would: the same scoring code and error codes.
    refused = serving.predict_all([{"income": 1.0}] * 10)
    assert {(r.status_code, r.json()["error"]["code"]) for r in refused} == {(422, "INVALID_INPUT")}
    assert all(
        {"column": "debt_ratio", "problem": "missing"} in r.json()["error"]["details"] for r in refused
    )

    # A canary step: stable stays in the router, the canary is answered by its own application.
    serving.route({"1", "2"}, {"1": 50, "2": 50}, stable="1")
    before = serving.stats()
    served, after = answer_all(serving, records)
    assert served["1"] > 0 and served["2"] > 0, served
    assert in_router_answers(after, "1") - in_router_answers(before, "1") == served["1"]
    assert after.in_router is not None and "2" not in after.in_router.answered, "the canary never is"
    for version in ("1", "2"):
        assert delta(before, after, "live", version)["requests"] == served[version]
        # Judged latencies for both paths (warm-up answers aside).
        assert sum(delta(before, after, "live", version)["buckets"]) > 0
    assert after.in_router.loads == loads, "stable was not loaded again"

    # Rolled back: stable keeps its copy in the router.
    serving.route({"1", "2"}, {"1": 100, "2": 0}, stable="1")
    before = serving.stats()
    served, after = answer_all(serving, records)
    assert served == {"1": len(records)}
    assert in_router_answers(after, "1") - in_router_answers(before, "1") == len(records)
    assert after.in_router is not None and after.in_router.loads == loads

    # Promoted: 2 is loaded; until it is, its application answers, and 1's copy answers nothing more.
    serving.route({"1", "2"}, {"1": 0, "2": 100}, stable="2")
    early, _ = answer_all(serving, records[:20])
    assert early == {"2": 20}
    before = loaded_in_router(serving, loads + 1, "version 2 loaded in the router")
    served, after = answer_all(serving, records)
    assert served == {"2": len(records)}
    assert in_router_answers(after, "2") - in_router_answers(before, "2") == len(records)
    assert in_router_answers(after, "1") == in_router_answers(before, "1")
    assert after.in_router is not None and after.in_router.load_failures == 0, after.in_router.last_error
    print(f"in-router: {after.in_router}")


def test_a_stable_model_the_router_cannot_load_is_answered_by_its_application(serving: Serving) -> None:
    """The router's load fails (here: a model URI that does not exist, in the router's config only); the
    failure shows in the figures and every request still gets the version application's answer."""
    serving.route({"1", "2"}, {"1": 100, "2": 0}, stable="1")
    assert serving.last_plan is not None
    apps = plan_serve_apps(serving.md, "credit-risk", serving.last_plan, serving.config)
    apps[0]["deployments"][0]["user_config"]["in_router"]["model_uri"] = "models:/no-such-model/1"
    serving.client.apply_applications(apps, set(), serving.config.http_options)
    serving.last_plan = None  # the next route() applies its plan again

    def failed_to_load() -> TrafficStats | None:
        stats = serving.stats()
        return stats if stats.in_router is not None and stats.in_router.load_failures >= 1 else None

    before = wait_until(failed_to_load, 180, "the router's load to fail", interval_s=0.5)
    assert "no-such-model" in (before.in_router.last_error or ""), before.in_router
    records = applicant_records(60, seed=29)
    served, after = answer_all(serving, records)
    assert served == {"1": len(records)}
    assert in_router_answers(after, "1") == in_router_answers(before, "1"), "nothing answered in the router"
    assert delta(before, after, "live", "1")["requests"] == len(records)
    serving.route({"1", "2"}, {"1": 100}, stable=None)  # stops the retries


# ------------------------------------------------------------------------------------------------ figures


def test_a_failing_version_shows_its_error_rate(serving: Serving) -> None:
    serving.route({"3"}, {"3": 100})
    replicas_before = serving.version_replicas({"3"})
    records = applicant_records(200, seed=17)
    fails = failing(records, ERROR_SHARE)
    before = serving.stats()
    answers = serving.predict_all(records)
    after = serving.stats()

    assert [a.status_code for a in answers] == [500 if f else 200 for f in fails]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 500} == {"MODEL_ERROR"}
    live = delta(before, after, "live", "3")
    assert (live["requests"], live["errors"], live["rejected"]) == (len(records), sum(fails), 0)
    assert live["errors"] / live["requests"] == pytest.approx(ERROR_SHARE, abs=0.08)
    # The model raised; the replica answered 500 and lived on.
    assert serving.version_replicas({"3"}) == replicas_before
    print(f"faulty v3: {live['errors']} errors in {live['requests']} requests")


def test_a_slow_version_lands_in_its_latency_buckets(serving: Serving) -> None:
    serving.route({"4"}, {"4": 100})
    # A version's first answers through the (one) router replica are counted, not timed: its cold start.
    start = serving.stats()
    assert all(serving.predict(r).status_code == 200 for r in applicant_records(WARMUP_ANSWERS, seed=17))
    warming = delta(start, serving.stats(), "live", "4")
    assert (warming["requests"], sum(warming["buckets"])) == (WARMUP_ANSWERS, 0)
    records = applicant_records(30, seed=18)
    before = serving.stats()
    answers = [serving.predict(r) for r in records]
    after = serving.stats()

    assert all(a.status_code == 200 for a in answers)
    buckets = delta(before, after, "live", "4")["buckets"]
    assert sum(buckets) == len(records)
    # Slower than the model's sleep, and not absurdly slower.
    assert sum(buckets[: LATENCY_BUCKETS_MS.index(DELAY_MS) + 1]) == 0
    assert sum(buckets[LATENCY_BUCKETS_MS.index(1000) + 1 :]) == 0
    print(
        "slow v4 latency buckets:",
        {f"<={b}": n for b, n in zip(LATENCY_BUCKETS_MS, buckets, strict=False) if n},
    )


def test_a_version_whose_application_is_gone_answers_503(
    serving: Serving, ray_client: RayServeClient
) -> None:
    serving.route({"4"}, {"4": 100})
    gone = version_app_name(serving.router_app, "4")
    ray_client.delete_applications({gone}, serving.stack.operator_config().http_options)
    serving.deployed.discard("4")
    serving.last_plan = None
    wait_until(lambda: gone not in ray_client.applications(), 120, f"{gone} deleted")
    before = serving.stats()

    answer = serving.predict(applicant_records(1, seed=19)[0])
    after = serving.stats()

    assert (answer.status_code, version_of(answer)) == (503, "4")
    assert answer.json()["error"]["code"] == "VERSION_UNAVAILABLE"
    assert delta(before, after, "live", "4")["errors"] == 1
    print("version app gone:", answer.json()["error"])


# ------------------------------------------------------------------------------------------------- capture

CAPTURE_KEY = "integration-test-capture-key-0123456789"


def test_captured_requests_land_as_parquet_with_the_policy_applied(serving: Serving) -> None:
    """Every request recorded (sampleRate 1) in the local store: income hashed, loan_amount dropped, gender
    and age_band kept from the model and recorded as sensitive features; the caller's request id echoed."""
    serving.route({"1"}, {"1": 100})
    md = serving.md.model_copy(
        update={
            "spec": serving.md.spec.model_copy(
                update={
                    "monitoring": MonitoringSpec.model_validate(
                        {
                            "capture": {
                                "sampleRate": 1.0,
                                "fields": {"income": "hash", "loan_amount": "drop"},
                                "sensitiveFeatures": ["gender", "age_band"],
                            }
                        }
                    )
                }
            )
        }
    )
    config = serving.config
    assert config.monitoring_uri is not None
    with_key = replace(config, replica_env={**config.replica_env, "STEWARD_CAPTURE_HASH_KEY": CAPTURE_KEY})
    plan = TrafficPlan(versions={v: serving.uris[v] for v in sorted(serving.deployed)}, weights={"1": 100})
    # The key goes to the router only: a new runtime_env for the version apps would restart their replicas.
    apps = (
        plan_serve_apps(md, "credit-risk", plan, with_key)[:1]
        + plan_serve_apps(md, "credit-risk", plan, config)[1:]
    )
    serving.client.apply_applications(apps, set(), config.http_options)
    serving.last_plan = None  # the next route() redeploys the router without capture

    def capturing() -> TrafficStats | None:
        if serving.client.applications()[serving.router_app].status != "RUNNING":
            return None
        stats = serving.stats()
        return stats if stats.capture is not None else None

    before = wait_until(capturing, 300, "the router running with capture", interval_s=1)
    records = applicant_records(20, seed=23)
    ids = [f"capture-{i:03d}" for i in range(len(records))]
    answers = [serving.predict(r, {"X-Request-Id": rid}) for r, rid in zip(records, ids, strict=True)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    # One id per request: the caller's, once in the header (Ray's proxy echoes it), and in the body.
    assert [a.headers.get_list("x-request-id") for a in answers] == [[rid] for rid in ids]
    assert [a.json()["requestId"] for a in answers] == ids
    anonymous = serving.predict(records[0])
    assert anonymous.headers["x-request-id"] == anonymous.json()["requestId"]

    folder = Path(config.monitoring_uri) / md.key / "v1"

    def stored() -> list[pd.DataFrame] | None:
        # A list, not the frame itself: wait_until tests truth, which a DataFrame refuses to have.
        files = sorted(folder.glob("date=*/*.parquet"))
        if not files:
            return None
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        return [frame] if set(ids) <= set(frame["request_id"]) else None

    (frame,) = wait_until(stored, 30, f"captured rows under {folder}", interval_s=0.5)
    rows = frame.set_index("request_id").loc[ids]
    expected_hash = [keyed_hash(CAPTURE_KEY.encode(), r["income"]) for r in records]
    assert list(rows["input.income"]) == expected_hash
    assert "input.loan_amount" not in rows.columns
    assert list(rows["input.debt_ratio"]) == [r["debt_ratio"] for r in records]
    assert list(rows["sensitive.gender"]) == [r["gender"] for r in records]
    assert list(rows["sensitive.age_band"]) == [r["age_band"] for r in records]
    assert not {"input.gender", "input.age_band"} & set(rows.columns)
    assert list(rows["prediction"]) == [a.json()["predictions"][0] for a in answers]
    assert set(rows["status"]) == {200} and set(rows["version"]) == {"1"}
    assert str(rows["timestamp"].dt.tz) == "UTC"

    after = stats_once(
        serving,
        lambda s: s.capture is not None and s.capture.written >= (before.capture.written + len(ids)),
        "capture counted in the router's figures",
    )
    assert after.capture is not None and after.capture.dropped == 0, after.capture
    print(f"captured {len(frame)} rows to {folder}; stats {after.capture}")

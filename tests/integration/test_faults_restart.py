"""The control loop SIGKILLed at every step of a rollout and started again, on the real stack.

One deployment, one loop process: a canary of a healthy version (promoted), a canary of a version that fails
half its requests (rolled back), then a deletion. During each, the loop is killed whenever the object's
rollout state moves or a new audit record lands (that is: between passes and in the middle of one), and
started again at once. Each must end as it would have without the kills: the same outcome, traffic that
only ever moves forward (read from Ray), and a trail with every record exactly once that `steward audit
verify` accepts.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from faults import Killer, Load, LoopProcess, WeightSampler, actions, fault_home, md_doc, trail_problems
from helpers import applicant_records, wait_gone, wait_until
from typer.testing import CliRunner

from steward.adapters.ray_serve import RayServeClient
from steward.api.serve_app import version_app_name
from steward.audit.store import LocalFolderStore
from steward.cli.main import app as cli_app
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject
from steward.operator.serve_config import app_name

pytestmark = pytest.mark.integration
NS, NAME = "faults", "kill9"
# Latency is not what these tests judge: restarts on 2 cores must not fail a healthy version on p95 noise.
ROLLOUT = {
    "steps": [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 60}, {"analysis": {}}],
    "analysis": {"interval": "4s", "minRequests": 5, "maxLatencyP95Ratio": 1000},
    "stickiness": {"header": "X-Customer-Id"},
}
# created .. deployed, then per rollout: its spec change, start, steps, verdicts and outcome; then deleted.
PROMOTION = [
    "spec-changed",
    "rollout-started",
    "rollout-step",
    "analysis-verdict",
    "rollout-step",
    "analysis-verdict",
    "promoted",
]
ROLLBACK = ["spec-changed", "rollout-started", "rollout-step", "analysis-verdict", "rolled-back"]


def finished(store: LocalStore, count: int) -> StoredObject | None:
    obj = store.get(NS, NAME)
    done = obj is not None and len(obj.status.rollout_history) >= count and obj.status.rollout is None
    return obj if done else None


def non_decreasing(xs: list[int]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(xs))


def test_sigkill_at_every_rollout_step_changes_no_outcome_and_loses_or_repeats_no_record(
    stack: Stack, models: Any, ray_client: RayServeClient, tmp_path: Path
) -> None:
    from steward.dev.credit_model import register_faulty

    started = time.monotonic()
    faulty = register_faulty(stack.tracking_uri, "credit-risk", error_share=0.5, n=1000, seed=21)
    home = fault_home(stack, tmp_path / "home")
    store = LocalStore(home)
    audit_dir = home / "audit" / NS / NAME
    loop = LoopProcess(home)
    first = md_doc(NS, NAME, models.good_v1, ROLLOUT)
    router = app_name(first)
    loop.start()
    try:
        store.apply(first)
        obj = wait_until(
            lambda: (o := store.get(NS, NAME)) and o.status.phase.value == "Ready" and o, 180, "v1 Ready"
        )
        with (
            Load(str(obj.status.endpoint), applicant_records(50, seed=5)) as load,
            WeightSampler(ray_client, lambda: router) as sampler,
        ):
            # 1. A healthy version, promoted through every step while the loop keeps dying.
            with Killer(loop, store, NS, NAME, audit_dir) as killer:
                store.apply(md_doc(NS, NAME, models.good_v2, ROLLOUT))
                promoted = wait_until(lambda: finished(store, 1), 240, "v2 promoted (under kills)")
            promote_kills = list(killer.kills)
            print(f"\npromote kills: {killer.summary()}")
            assert not killer.errors, killer.errors
            # 2. A version failing half its requests, rolled back while the loop keeps dying.
            with Killer(loop, store, NS, NAME, audit_dir) as killer:
                store.apply(md_doc(NS, NAME, faulty, ROLLOUT))
                rolled_back = wait_until(lambda: finished(store, 2), 240, "faulty version rolled back")
            rollback_kills = list(killer.kills)
            print(f"rollback kills: {killer.summary()}")
            assert not killer.errors, killer.errors
            wait_gone(ray_client, version_app_name(router, faulty))
        assert not sampler.errors, sampler.errors
        # 3. Deleted while the loop keeps dying.
        with Killer(loop, store, NS, NAME, audit_dir) as killer:
            store.remove(NS, NAME, {"steward.io/actor": "fault@bank", "steward.io/change-reason": "retired"})
            wait_until(lambda: store.get(NS, NAME) is None, 120, "the object to be finalized")
        delete_kills = list(killer.kills)
        print(f"delete kills: {killer.summary()}")
        assert not killer.errors, killer.errors
        for name in (router, version_app_name(router, models.good_v2)):
            wait_gone(ray_client, name)
    finally:
        loop.stop()
    print(
        f"\nkills: promote {len(promote_kills)}, rollback {len(rollback_kills)}, delete {len(delete_kills)}; "
        f"loop starts {loop.starts}; {time.monotonic() - started:.0f}s"
    )

    # Each rollout ended as it would have.
    history = [(h.to_version, h.outcome.value) for h in rolled_back.status.rollout_history]
    assert history == [(models.good_v2, "Promoted"), (faulty, "RolledBack")], history
    assert promoted.status.stable is not None and promoted.status.stable.version == models.good_v2
    assert rolled_back.status.stable is not None and rolled_back.status.stable.version == models.good_v2
    # The kills did happen, at many steps, both between passes and in the middle of one.
    assert len(promote_kills) >= 6 and len(rollback_kills) >= 3 and len(delete_kills) >= 1, (
        promote_kills,
        rollback_kills,
        delete_kills,
    )
    assert {k.trigger for k in promote_kills + rollback_kills} == {"status", "audit"}

    # Traffic only ever moved forward, as Ray itself reports the router's weights.
    v2_weights = sampler.weights_of(models.good_v2)
    v2_weights = v2_weights[v2_weights.index(20) :] if 20 in v2_weights else v2_weights
    assert non_decreasing(v2_weights[: v2_weights.index(100) + 1] if 100 in v2_weights else v2_weights), (
        sampler.seen
    )
    assert {20, 60} <= set(v2_weights), sampler.seen
    faulty_weights = sampler.weights_of(faulty)
    peak = faulty_weights.index(max(faulty_weights))
    assert non_decreasing(faulty_weights[: peak + 1]) and faulty_weights[peak:] == sorted(
        faulty_weights[peak:], reverse=True
    ), sampler.seen
    assert max(faulty_weights) == 20, sampler.seen
    # Stable kept answering; only the faulty version's own answers failed.
    assert load.failed(models.good_v1) == [] and load.failed(models.good_v2) == []
    assert all(a.version == faulty for a in load.failed()), load.failed()[:5]

    # The trail: every record exactly once, in order, and verify accepts it.
    records = LocalFolderStore(home / "audit").read(f"{NS}/{NAME}")
    assert trail_problems(f"{NS}/{NAME}", records) == []
    assert actions(records) == ["created", "deployed", *PROMOTION, *ROLLBACK, "deleted"], actions(records)
    steps = [(r.model.to_version if r.model else None, r.evidence.get("weight")) for r in records]
    weight_steps = [s for s, r in zip(steps, records, strict=True) if r.action.value == "rollout-step"]
    assert weight_steps == [(models.good_v2, 20), (models.good_v2, 60), (faulty, 20)], weight_steps
    verified = CliRunner().invoke(
        cli_app, ["audit", "verify", NAME, "-n", NS, "--home", str(home)], catch_exceptions=False
    )
    assert verified.exit_code == 0, verified.output
    assert f"{len(records)} records" in verified.output

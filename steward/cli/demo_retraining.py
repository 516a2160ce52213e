"""The closing chapter of `make demo`, the loop closed. In a downturn the applicants' incomes fall and, with
less slack, high debt ratios default more often; their outcomes come back (`steward feedback`); the drift
monitor breaches on the serving version (`onBreach: retrain`); a Ray Job trains on the captured, labelled
traffic; the candidate beats the serving version on a holdout, is canaried under @challenger (fairness judged
against stable) and promoted (@champion moved). The chain is read back from the audit trail, with each step's
time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from steward.api.manifests import load_manifests
from steward.api.retraining import (
    CandidateOutcome,
    RetrainingRunRecord,
    RetrainingSpec,
    RetrainingState,
    RetrainingStatus,
    RunOutcome,
)
from steward.api.rollout import Outcome, duration_s
from steward.audit.records import AuditAction, AuditRecord
from steward.cli.common import stamped
from steward.cli.demo_monitoring import Scene
from steward.cli.demo_rollout import expect, watch_rollout
from steward.cli.demo_traffic import Applicant
from steward.dev.credit_model import FEATURES, SENSITIVE, applicants
from steward.dev.store import spec_hash

RETRAINING = Path(__file__).resolve().parents[2] / "examples" / "credit-risk-retraining.yaml"
MODEL = "credit-risk"
INCOME_FACTOR = 0.7
FEED_EVERY_S = 8.0
# The run waits for a person (approval: manual); the chapter approves once this many of the downturn's
# outcomes are in, so the job's data window (the last minute) holds the downturn, not the months before it.
APPROVE_AFTER_OUTCOMES = 400
# Seconds past the data window after the downturn began before approving: requests answered just before the
# downturn (and labelled by the quality chapter) stay out of the window.
DATA_WINDOW_MARGIN_S = 5.0


def downturn(n: int, seed: int) -> list[Applicant]:
    """The applicants of a downturn: incomes 30% lower, and outcomes from another rule (debt ratio weighs 2.5
    times as much, a long credit history no longer protects): a change the serving version cannot know."""
    frame = applicants(n, seed, income_factor=INCOME_FACTOR)
    logit = (
        -0.9
        - 0.00003 * (frame["income"] - 40000)
        + 10.0 * (frame["debt_ratio"] - 0.3)
        + 0.9 * frame["late_payments"]
        + 0.00004 * (frame["loan_amount"] - 13000)
    )
    draw = np.random.default_rng([seed, 2]).random(n)
    defaulted = (draw < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)
    records = frame[FEATURES + SENSITIVE].to_dict(orient="records")
    # The live client's customer ids: a customer stays on one version (stickiness) through the change.
    return [
        Applicant(f"customer-{i}", record, int(label))
        for i, (record, label) in enumerate(zip(records, defaulted, strict=True))
    ]


def _apply(scene: Scene, timeout_s: float = 180) -> RetrainingSpec:
    """Apply the retraining manifest and wait until the operator has taken it; returns its spec.retraining."""
    (md,) = load_manifests(RETRAINING)
    if md.spec.retraining is None:
        raise SystemExit(f"{RETRAINING} has no spec.retraining")
    scene.store.apply(stamped(md, "make demo: close the loop, retrain on drift"))
    wanted = spec_hash(md)
    deadline = time.monotonic() + timeout_s
    with scene.console.status("waiting for the operator to take the retraining spec..."):
        while time.monotonic() < deadline:
            obj = scene.get()
            if obj.spec_hash == wanted and obj.status.observed_generation == obj.generation:
                return md.spec.retraining
            time.sleep(1)
    raise SystemExit(f"{scene.name} did not take {RETRAINING.name} within {timeout_s:.0f}s")


def _retraining(scene: Scene) -> RetrainingStatus:
    return scene.get().status.retraining or RetrainingStatus()


def _feed(scene: Scene, shown: bool) -> int:
    """The outcomes of the requests answered since the last feed, as `steward feedback` writes them."""
    from steward.cli.feedback import default_store, feedback, validated, write_outcomes

    outcomes = scene.client.outcomes()
    if outcomes.empty:
        return 0
    if not shown:
        path = scene.stack.home / "outcomes" / f"outcomes-{datetime.now(UTC):%Y%m%dT%H%M%S}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        outcomes.to_csv(path, index=False)
        scene.console.print(f"   outcomes come back: `steward feedback {scene.name} -f {path}`")
        feedback(scene.name, path, namespace=scene.namespace, store=None, home=scene.stack.home)
        return len(outcomes)
    store = default_store(scene.stack.home)
    assert store is not None  # the local stack's
    now = datetime.now(UTC)
    write_outcomes(store, f"{scene.namespace}/{scene.name}", validated(outcomes, now), now)
    return len(outcomes)


def _wait_run(
    scene: Scene, runs_before: int, timeout_s: float, approve_from: float
) -> tuple[RetrainingRunRecord, float, int]:
    """Feed outcomes while the drift monitor judges and the job is asked for; stop feeding once the job is
    submitted (what it trains on was answered before the request). Approves from `approve_from` (monotonic)
    once enough outcomes are in. Returns the finished run, when it was first seen requested (monotonic) and
    the outcomes fed."""
    deadline = time.monotonic() + timeout_s
    fed = 0
    while not fed:  # the first feed, shown as a person would send it
        if time.monotonic() >= deadline:
            raise SystemExit(f"no answer from {scene.name} within {timeout_s:.0f}s: {scene.client.summary()}")
        time.sleep(FEED_EVERY_S)
        fed = _feed(scene, shown=False)
    shown, last_feed, seen_at = True, time.monotonic(), 0.0
    with scene.console.status("the drift monitor judges the downturn's traffic...") as spin:
        while time.monotonic() < deadline:
            status = _retraining(scene)
            run = status.current
            if len(status.runs) > runs_before and run is None:
                return status.runs[-1], seen_at or time.monotonic(), fed
            if run is not None and not seen_at:
                seen_at = time.monotonic()
            ripe = fed >= APPROVE_AFTER_OUTCOMES and time.monotonic() >= approve_from
            if status.state == RetrainingState.AWAITING_APPROVAL and ripe:
                _approve(scene, fed)
            submitted = run is not None and run.submitted_at is not None
            if not submitted and time.monotonic() - last_feed >= FEED_EVERY_S:
                fed += _feed(scene, shown)
                last_feed = time.monotonic()
            what = (
                f"run {run.submission_id[-16:]}: {status.state.value} ({escape(run.message[:100])})"
                if run is not None
                else f"no run yet; {fed} outcomes fed; {escape(status.message[:100])}"
            )
            spin.update(f"retraining: {what}")
            time.sleep(1)
    raise SystemExit(
        f"no retraining run of {scene.name} ended within {timeout_s:.0f}s "
        f"(retraining {_retraining(scene).state.value}: {_retraining(scene).message}); "
        f"see `steward get md {scene.name} -o yaml` and `steward monitor status {scene.name}`"
    )


def _approve(scene: Scene, fed: int) -> None:
    from steward.cli.retrain import retrain

    reason = f"MRM review: {fed} downturn outcomes in; retrain on them"
    scene.console.print(f'   a person approves: `steward retrain approve {scene.name} --reason "{reason}"`')
    retrain("approve", scene.name, reason=reason, namespace=scene.namespace, home=scene.stack.home)


def _records(scene: Scene) -> list[AuditRecord]:
    from steward.cli.audit import audit_store

    return audit_store(scene.stack.home).read(f"{scene.namespace}/{scene.name}")


def _evaluation(scene: Scene, run: RetrainingRunRecord) -> AuditRecord:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the trail is written a moment after status
        found = next(
            (r for r in _records(scene) if r.cause == f"candidate-evaluated:{run.submission_id}"), None
        )
        if found is not None:
            return found
        time.sleep(1)
    raise SystemExit(f"no candidate-evaluated record of run {run.submission_id} in the audit trail")


def _print_evaluation(scene: Scene, record: AuditRecord, serving: str, candidate: str) -> None:
    evidence = record.evidence
    table = Table(
        title=f"offline, on {evidence.get('holdout_rows')} held-out labelled requests "
        f"(trained on {evidence.get('training_rows')})",
        header_style="bold",
        box=None,
        title_justify="left",
    )
    for column in ("FIGURE", f"SERVING v{serving}", f"CANDIDATE v{candidate}"):
        table.add_column(column)
    theirs, ours = evidence.get("serving") or {}, evidence.get("candidate") or {}
    for group in ("quality", "parity_ratio"):
        for key in sorted(ours.get(group) or {}):
            before = (theirs.get(group) or {}).get(key)
            label = key if group == "quality" else f"parity ratio {key}"
            table.add_row(label, "n/a" if before is None else f"{before:.3f}", f"{ours[group][key]:.3f}")
    scene.console.print(table)


def _alias(scene: Scene, alias: str) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        found = MlflowClient(scene.stack.tracking_uri).get_model_version_by_alias(MODEL, alias)
    except MlflowException:
        return None
    return str(found.version)


def _wait_canary(scene: Scene, candidate: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        obj = scene.get()
        rollout = obj.status.rollout
        if rollout is not None and rollout.canary.version == candidate:
            return
        ret = obj.status.retraining
        last = ret.runs[-1] if ret and ret.runs else None
        if last is not None and last.candidate_version == candidate and last.rollout is not None:
            raise SystemExit(
                f"the demo expected candidate {candidate} to be canaried, but it was "
                f"{last.rollout.value}: {last.rollout_message}"
            )
        time.sleep(0.5)
    raise SystemExit(f"candidate {candidate} was not canaried within {timeout_s:.0f}s")


def _steps(chain: list[AuditRecord], shifted: datetime) -> list[tuple[str, float]]:
    """What each step took, from the trail's timestamps: (step, seconds)."""

    def at(action: AuditAction, nth: int = 0) -> datetime:
        found = [r.timestamp for r in chain if r.action == action]
        if len(found) <= nth:
            raise SystemExit(f"the trail lacks a {action.value} record in the candidate's lineage")
        return found[nth]

    marks = [
        ("downturn -> drift breach (retraining-requested)", shifted, at(AuditAction.RETRAINING_REQUESTED)),
        (
            "request -> job submitted (approved by a person)",
            at(AuditAction.RETRAINING_REQUESTED),
            at(AuditAction.RETRAINING_STARTED),
        ),
        (
            "training job on Ray (to retraining-finished)",
            at(AuditAction.RETRAINING_STARTED),
            at(AuditAction.RETRAINING_FINISHED),
        ),
        (
            "offline evaluation -> canary started",
            at(AuditAction.RETRAINING_FINISHED),
            at(AuditAction.ROLLOUT_STARTED),
        ),
        (
            "canary (50%, health + fairness gate) -> promoted",
            at(AuditAction.ROLLOUT_STARTED),
            at(AuditAction.PROMOTED),
        ),
    ]
    return [(label, (end - start).total_seconds()) for label, start, end in marks]


def retraining_chapter(scene: Scene) -> None:
    from steward.cli.retrain import lineage, lineage_records

    console = scene.console
    spec = _apply(scene)
    status = _retraining(scene)
    if status.current is not None or status.candidate_rollout is not None:
        raise SystemExit(
            f"a retraining run or candidate of {scene.name} is already under way ({status.state.value}); "
            "play this chapter on a fresh --home, or wait for it to end"
        )
    last_start = max((r.started_at for r in status.runs if r.started_at), default=None)
    if last_start is not None and (datetime.now(UTC) - last_start).total_seconds() < 600:
        raise SystemExit(
            f"a retraining run of {scene.name} started at {last_start:%H:%M:%S} UTC: within the demo's "
            "cooldown (10m) a breach is refused; play this chapter again later or on a fresh --home"
        )
    runs_before, serving = len(status.runs), scene.stable()
    before_rollouts = len(scene.get().status.rollout_history)
    people = downturn(3000, seed=2028)
    scene.client.outcomes()  # earlier applicants' outcomes are not what this run should learn from
    with scene.client._lock:  # the live client has no hook for a population of one's own
        scene.client._population = people
    shifted = datetime.now(UTC)
    # The job trains on the data window before its submission (at approval): approving before the downturn
    # has lasted that long mixed in the previous chapter's labelled traffic, and the candidate learned the
    # old rule (rejected offline in one run where the quality chapter ended quickly).
    approve_from = time.monotonic() + duration_s(spec.data_window) + DATA_WINDOW_MARGIN_S
    console.print(
        f"\n[bold]6. Retraining[/]: a downturn: from now on the applicants' incomes are "
        f"{1 - INCOME_FACTOR:.0%} lower, high debt ratios default more often and a long credit history "
        f"protects less than version {serving} learned; drift has onBreach: retrain "
        "(examples/credit-risk-retraining.yaml: manual approval, cooldown 10m, at most 3 runs a day, "
        "a 5m timeout)"
    )
    run, _, fed = _wait_run(scene, runs_before, timeout_s=420, approve_from=approve_from)
    console.print(
        f"   run {run.submission_id}: {run.trigger.reason[:200]}",
        highlight=False,
    )
    if run.outcome != RunOutcome.CANDIDATE_PASSED or run.candidate_version is None:
        raise SystemExit(
            f"the demo expected a candidate that passes its offline evaluation, but the run ended "
            f"{run.outcome.value}: {run.message}" + (f"\nlog tail: {run.log_tail}" if run.log_tail else "")
        )
    candidate = run.candidate_version
    console.print(
        f"   {fed} outcomes fed; the job registered version {candidate}: {escape(run.message[:300])}"
    )
    evaluated = _evaluation(scene, run)
    _print_evaluation(scene, evaluated, serving, candidate)
    metric = str((evaluated.evidence.get("margins") or {}).get("metric", "accuracy"))
    ours = (evaluated.evidence.get("candidate") or {}).get("quality", {}).get(metric)
    theirs = (evaluated.evidence.get("serving") or {}).get("quality", {}).get(metric)
    if ours is None or theirs is None or ours <= theirs:
        raise SystemExit(
            f"the demo expected candidate {candidate} to beat version {serving} on {metric}, "
            f"but it scored {ours} against {theirs}"
        )

    _wait_canary(scene, candidate, timeout_s=120)
    challenger = _alias(scene, "challenger")
    console.print(
        f"   canary: @challenger -> {challenger}, @champion -> {_alias(scene, 'champion')} "
        "(moved only on promotion); fairness judged against the serving version on the same window"
    )
    if challenger != candidate:
        raise SystemExit(
            f"the demo expected @challenger on version {candidate} during its canary, not {challenger}"
        )
    obj = watch_rollout(scene.store, scene.namespace, scene.name, before_rollouts, console, timeout_s=360)
    console.print(f"   traffic answered (version, HTTP status: count): {scene.client.summary()}")
    expect(obj, Outcome.PROMOTED)
    champion, challenger = _alias(scene, "champion"), _alias(scene, "challenger")
    if champion != candidate or challenger is not None:
        raise SystemExit(
            f"the demo expected @champion on {candidate} and no @challenger after the promotion, "
            f"found @champion {champion}, @challenger {challenger}"
        )
    last = _retraining(scene).runs[-1]
    if last.rollout != CandidateOutcome.PROMOTED:
        raise SystemExit(
            f"run {last.submission_id} says its candidate was {last.rollout}: {last.rollout_message}"
        )
    console.print(f"   promoted: @champion -> {champion}, @challenger cleared")

    console.print(f"\n`steward lineage {scene.name} {candidate}`:")
    lineage(scene.name, candidate, namespace=scene.namespace, home=scene.stack.home)
    records = _records(scene)
    chain = lineage_records(records, candidate)
    refused = [
        r
        for r in records
        if r.action == AuditAction.RETRAINING_REQUESTED
        and r.evidence.get("accepted") is False
        and r.timestamp >= shifted
    ]
    if refused:
        why = str(refused[-1].evidence.get("refused_because") or "")
        console.print(
            f"   {len(refused)} later breach(es) asked for a run and were refused: {escape(why[:160])}"
        )
    table = Table(title="what each step took", header_style="bold", box=None, title_justify="left")
    table.add_column("STEP")
    table.add_column("SECONDS", justify="right")
    steps = _steps(chain, shifted)
    for label, seconds in steps:
        table.add_row(label, f"{seconds:.0f}")
    breach_to_promoted = sum(s for _, s in steps[1:])
    table.add_row("[bold]breach -> promoted candidate[/]", f"[bold]{breach_to_promoted:.0f}[/]")
    console.print(table)

"""The monitoring chapters of `make demo`: the live client's incomes fall (drift), an unfair version is
canaried (fairness gate), outcomes are fed back (quality). Each waits for the operator's verdicts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from steward.adapters.monitoring_store import MonitoringStore
from steward.api.conditions import ConditionType
from steward.api.manifests import load_manifests
from steward.api.monitor_results import MonitorVerdict
from steward.api.monitoring_status import MonitorResultSummary
from steward.api.rollout import Outcome
from steward.cli.common import stamped
from steward.cli.demo_rollout import expect, watch_rollout
from steward.cli.demo_traffic import LiveClient
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject, spec_hash
from steward.operator.status import find

MONITORED = Path(__file__).resolve().parents[2] / "examples" / "credit-risk-monitored.yaml"
MODEL = "credit-risk"
INCOME_FACTOR = 0.7


@dataclass
class Scene:
    stack: Stack
    store: LocalStore
    namespace: str
    name: str
    console: Console
    client: LiveClient

    def get(self) -> StoredObject:
        obj = self.store.get(self.namespace, self.name)
        if obj is None:
            raise SystemExit(f"{self.namespace}/{self.name} is gone; did something delete it?")
        return obj

    def stable(self) -> str:
        stable = self.get().status.stable
        if stable is None:
            raise SystemExit(f"{self.namespace}/{self.name} has no stable version")
        return stable.version


def apply_monitored(store: LocalStore, console: Console, timeout_s: float = 180) -> tuple[str, str]:
    """Apply the monitored manifest and wait until the operator serves it (capture on)."""
    (md,) = load_manifests(MONITORED)
    ns, name = md.metadata.namespace, md.metadata.name
    store.apply(stamped(md, "make demo: watch the credit model on its live traffic"))
    # The loop admits the manifest a moment later; a chapter played again applies the same spec.
    wanted = spec_hash(md)
    console.print(
        f"\napplied {MONITORED.name}: capture every request (gender and age_band kept aside, never sent to "
        "the model), monitors drift, fairness and quality judging the last minute every 20 s"
    )
    deadline = time.monotonic() + timeout_s
    with console.status("waiting for the operator to take the new spec..."):
        while time.monotonic() < deadline:
            obj = store.get(ns, name)
            if (
                obj is not None
                and obj.spec_hash == wanted
                and obj.status.observed_generation == obj.generation
                and obj.status.phase.value == "Ready"
            ):
                return ns, name
            time.sleep(1)
    raise SystemExit(f"{ns}/{name} did not take {MONITORED.name} within {timeout_s:.0f}s")


def wait_for_result(
    scene: Scene,
    monitor: str,
    version: str,
    after: datetime,
    done: Callable[[MonitorResultSummary], bool],
    timeout_s: float,
) -> MonitorResultSummary:
    """The first verdict of `monitor` on `version` for a window ending after `after` that `done` accepts."""
    deadline = time.monotonic() + timeout_s
    seen = "no window judged yet"
    with scene.console.status(f"waiting for the {monitor} monitor's verdict on version {version}...") as spin:
        while time.monotonic() < deadline:
            monitoring = scene.get().status.monitoring
            result = monitoring.latest(monitor, version) if monitoring else None
            if result is not None and result.window_end > after:
                if done(result):
                    return result
                seen = f"last window {result.verdict.value}: {result.summary[:120]}"
            spin.update(f"waiting for the {monitor} monitor on version {version} ({escape(seen)})")
            time.sleep(1)
    raise SystemExit(
        f"no fitting {monitor} verdict on version {version} within {timeout_s:.0f}s ({seen}); "
        f"see `steward monitor status {scene.name}` and {scene.stack.home / 'logs'}"
    )


def _figures(result: MonitorResultSummary) -> str:
    return "; ".join(
        f"{c.name} {c.value:.3g} (threshold {c.op} {c.threshold:.3g})"
        for c in result.breached
        if c.value is not None and c.threshold is not None
    )


def drift_chapter(scene: Scene) -> None:
    console, stable = scene.console, scene.stable()
    scene.client.shift_incomes(INCOME_FACTOR)
    shifted_at = datetime.now(UTC)
    console.print(
        f"\n[bold]3. Drift[/]: from now on the applicants' incomes are {1 - INCOME_FACTOR:.0%} lower "
        f"than in version {stable}'s training data"
    )
    result = wait_for_result(
        scene, "drift", stable, shifted_at, lambda r: r.verdict == MonitorVerdict.BREACH, timeout_s=300
    )
    obj = scene.get()
    condition = find(obj.status.conditions, ConditionType.MONITORING)
    if condition is not None:
        console.print(
            f"   condition Monitoring={condition.status.value} {condition.reason.value}: "
            f"{escape(condition.message[:400])}",
            highlight=False,
        )
    alerts = [
        e
        for e in scene.store.read_events(scene.namespace, scene.name)
        if e["type"] == "Warning" and e["reason"] == "MonitorBreached" and "drift" in e["message"]
    ]
    if alerts:
        console.print(
            f"   Warning event {alerts[-1]['reason']}: {escape(alerts[-1]['message'])}", highlight=False
        )
    console.print(f"   {result.rows} rows judged; drifted: {escape(_figures(result))}", highlight=False)
    console.print(f"   HTML report (Evidently): [bold]{escape(result.report_uri or '?')}[/]", highlight=False)
    console.print(f"   its SHA-256, as the audit trail keeps it: {result.report_sha256}", highlight=False)
    scene.client.shift_incomes(1.0)
    console.print("   the applicants' incomes are back to normal for the next chapters")


def fairness_chapter(scene: Scene) -> None:
    from mlflow import MlflowClient

    from steward.dev.credit_model import register_unfair

    console, client = scene.console, MlflowClient(scene.stack.tracking_uri)
    stable = scene.stable()
    with console.status("registering a version that refuses every large loan..."):
        unfair = register_unfair(scene.stack.tracking_uri, MODEL, n=2000, seed=10)
    before = len(scene.get().status.rollout_history)
    client.set_registered_model_alias(MODEL, "champion", unfair)
    console.print(
        f"\n[bold]4. Fairness gate[/]: moved @champion to version {unfair}, which never sees gender but "
        "refuses large loans, most of which men ask for; rollout.analysis.requireMonitors: [fairness]"
    )
    obj = watch_rollout(scene.store, scene.namespace, scene.name, before, console, timeout_s=360)
    last = obj.status.rollout_history[-1]
    colour = "red" if last.outcome == Outcome.ROLLED_BACK else "yellow"
    console.print(
        f"   history: v{last.from_version} -> v{last.to_version} [{colour}]{last.outcome.value}[/]: "
        f"{escape(last.reason)}",
        highlight=False,
    )
    console.print(f"   traffic answered (version, HTTP status: count): {scene.client.summary()}")
    client.set_registered_model_alias(MODEL, "champion", stable)
    expect(obj, Outcome.ROLLED_BACK, "monitor fairness")
    console.print(f"   moved @champion back to version {stable}, which kept serving throughout")


def quality_chapter(scene: Scene) -> None:
    from steward.cli.feedback import feedback
    from steward.cli.monitor import print_status

    console, stable = scene.console, scene.stable()
    deadline = time.monotonic() + 300
    first = True
    fed_at: datetime | None = None
    while True:
        # Outcomes keep arriving while traffic flows (as a bank's do, daily): each round feeds those of the
        # requests answered since the last, until a window judged after them holds enough labelled rows.
        outcomes = scene.client.outcomes()
        if outcomes.empty:  # played alone, the client has only just started
            if time.monotonic() >= deadline:
                raise SystemExit(f"no answer from {scene.name} within 300 s: {scene.client.summary()}")
            time.sleep(5)
            continue
        path = scene.stack.home / "outcomes" / f"outcomes-{datetime.now(UTC):%Y%m%dT%H%M%S}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        outcomes.to_csv(path, index=False)
        if first:
            console.print(
                f"\n[bold]5. Quality[/]: the true outcomes of {len(outcomes)} answered requests are known; "
                f"`steward feedback {scene.name} -f {path}`:"
            )
        feedback(scene.name, path, namespace=scene.namespace, store=None, home=scene.stack.home)
        first = False
        # Any window ending after the first feed holds requests answered before it, whose outcomes are in.
        fed_at = fed_at or datetime.now(UTC)
        try:
            result = wait_for_result(
                scene,
                "quality",
                stable,
                fed_at,
                lambda r: r.verdict in (MonitorVerdict.PASS, MonitorVerdict.BREACH) and r.labelled_rows > 0,
                timeout_s=max(1.0, min(30.0, deadline - time.monotonic())),
            )
            break
        except SystemExit:
            if time.monotonic() >= deadline:
                raise
    table = Table(
        title=f"quality of version {stable}: {result.labelled_rows} of {result.rows} requests labelled",
        header_style="bold",
        box=None,
        title_justify="left",
    )
    for column in ("FIGURE", "VALUE", "THRESHOLD", "PASSED"):
        table.add_column(column)
    full = MonitoringStore().read_result((result.report_uri or "").replace("report.html", "result.json"))
    for check in full.checks if full else []:
        threshold = "" if check.threshold is None else f"{check.op} {check.threshold:.3g}"
        value = "n/a" if check.value is None else f"{check.value:.3f}"
        table.add_row(
            escape(check.name),
            value,
            threshold,
            "-" if check.passed is None else ("yes" if check.passed else "NO"),
        )
    console.print(table)
    console.print(f"\n`steward monitor status {scene.name}`:")
    print_status(scene.get().resource())


def retraining_chapter(scene: Scene) -> None:
    from steward.cli.demo_retraining import retraining_chapter as play  # it imports Scene from here

    play(scene)


CHAPTERS: dict[str, Callable[[Scene], None]] = {
    "drift": drift_chapter,
    "fairness": fairness_chapter,
    "quality": quality_chapter,
    "retraining": retraining_chapter,
}


def run_monitoring(
    stack: Stack, store: LocalStore, endpoint: str, chapters: list[str], console: Console
) -> None:
    """Apply the monitored manifest and play the chosen chapters on one live client's traffic."""
    ns, name = apply_monitored(store, console)
    with LiveClient(endpoint) as client:
        scene = Scene(stack, store, ns, name, console, client)
        for chapter in chapters:
            started = time.monotonic()
            CHAPTERS[chapter](scene)
            console.print(f"   [dim]chapter {chapter}: {time.monotonic() - started:.0f} s[/]")

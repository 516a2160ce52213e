"""`steward rollout status|history` and `steward promote|abort|pause|resume`, in local mode and against fakes.

Rendering is checked on the pure view functions; watching and waiting run the commands against a scripted
source and a clock that never sleeps; the annotation is checked in the local store's manifest, as the control
loop reads it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from builders import resolved
from rich.console import Console
from rich.text import Text
from typer.testing import CliRunner
from world import Behaviour, settled

import steward.cli.rollout as rollout_cli
import steward.cli.target as target_cli
from steward.api.manifests import load_manifests
from steward.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from steward.api.rollout import ROLLOUT_COMMAND_ANNOTATION, RolloutCommand, RolloutCommandKind
from steward.cli.main import app
from steward.cli.rollout_view import rollout_view
from steward.cli.sources import DeploymentSource, LocalSource, SourceError
from steward.dev.store import LocalStore

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NS, NAME = "risk", "credit"
STEPS = [{"setWeight": 10}, {"analysis": {"windows": 2}}, {"pause": {"duration": "30s"}}, {"pause": {}}]
PROMOTED = {
    "fromVersion": "2",
    "toVersion": "3",
    "strategy": "canary",
    "startedAt": "2026-11-20T09:00:00Z",
    "finishedAt": "2026-11-20T09:20:00Z",
    "outcome": "Promoted",
    "reason": "every analysis window passed",
}
runner = CliRunner()
S = TypeVar("S", bound=DeploymentSource)


def window(verdict: str = "Pass", summary: str = "error rate 0.5% <= 1% over 400 requests") -> dict[str, Any]:
    return {
        "startedAt": T0 - timedelta(seconds=60),
        "endedAt": T0 - timedelta(seconds=30),
        "verdict": verdict,
        "summary": summary,
        "canary": {
            "requests": 400,
            "errors": 2,
            "errorRate": 0.005,
            "latencyP95Ms": 41.2,
            "latencyP99Ms": 80.4,
        },
        "stable": {
            "requests": 3600,
            "errors": 9,
            "errorRate": 0.0025,
            "latencyP95Ms": 38.0,
            "latencyP99Ms": 70.0,
        },
        "disagreement": 0.02,
        "compared": 350,
    }


def active(state: str = "Progressing", **update: Any) -> dict[str, Any]:
    rollout: dict[str, Any] = {
        "strategy": "canary",
        "canary": {"version": "4", "modelUri": "models:/credit-risk/4"},
        "fromVersion": "3",
        "state": state,
        "message": "",
        "startedAt": T0 - timedelta(minutes=5),
        "stepIndex": 1,
        "stepCount": len(STEPS),
        "stepStartedAt": T0 - timedelta(seconds=70),
        "weight": 10,
        "passedWindows": 1,
        "windows": [window()],
    }
    return {**rollout, **update}


def record(
    outcome: str, to_version: str = "4", started_at: datetime = T0 - timedelta(minutes=5)
) -> dict[str, Any]:
    return {
        "fromVersion": "3",
        "toVersion": to_version,
        "strategy": "canary",
        "startedAt": started_at,
        "finishedAt": T0,
        "outcome": outcome,
        "reason": f"{outcome.lower()}: error rate 12% > 1% over 400 requests",
    }


def status(
    rollout: dict[str, Any] | None = None, history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "stable": {"version": "3", "modelUri": "models:/credit-risk/3"},
        "rollout": rollout,
        "rolloutHistory": [PROMOTED] if history is None else history,
    }


def deployment(
    st: dict[str, Any],
    rollout_spec: dict[str, Any] | None = None,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": NAME,
                "namespace": NS,
                "generation": generation,
                "annotations": annotations or {},
            },
            "spec": {
                "model": {"name": "credit-risk", "version": "4"},
                "rollout": rollout_spec or {"steps": STEPS},
            },
            "status": st,
        }
    )


def text(md: ModelDeployment, now: datetime = T0) -> str:
    out = Console(record=True, width=200)
    out.print(rollout_view(md, now))
    return out.export_text()


def lines_with(output: str, *needles: str) -> None:
    """Each needle appears on some line, so a marker is checked next to its own step."""
    lines = output.splitlines()
    for needle in needles:
        assert any(needle in line for line in lines), f"{needle!r} not in:\n{output}"


# --------------------------------------------------------------------------------------------- rendering


def test_progressing_analysis_step_shows_steps_weight_windows_and_history() -> None:
    out = text(deployment(status(active(message="window 2 of 2 running [10%]"))))
    lines_with(
        out,
        "risk/credit  canary rollout  version 3 -> 4",
        "state  Progressing: window 2 of 2 running [10%]",
        "started 2026-11-23 11:55:00 UTC (5m00s ago); step 2/4 for 1m10s",
        "✓ 1. setWeight 10%",
        "▶ 2. analysis (1/2 windows passed)",
        "· 3. pause 30s",
        "· 4. pause (until resumed)",
        "███░░░░░░░░░░░░░░░░░░░░░░░░░░░  10% to version 4, 90% to version 3",
    )
    row = next(line for line in out.splitlines() if "2026-11-23 11:59:30" in line)
    for cell in (
        "Pass",
        "400 / 3600",
        "0.50% / 0.25%",
        "41 / 38",
        "80 / 70",
        "2.0% of 350",
        "over 400 requests",
    ):
        assert cell in row
    lines_with(out, "2 -> 3", "Promoted", "every analysis window passed")


def test_failed_windows_are_counted_against_the_limit() -> None:
    out = text(deployment(status(active(passedWindows=0, failedWindows=1, windows=[window("Fail")]))))
    lines_with(out, "▶ 2. analysis (0/2 windows passed, 1 failed, 0 tolerated)")


def test_a_timed_pause_counts_down() -> None:
    rollout = active(stepIndex=2, stepStartedAt=T0 - timedelta(seconds=12), weight=10)
    lines_with(text(deployment(status(rollout))), "✓ 2. analysis", "▶ 3. pause 30s (18s left)")


def test_an_open_pause_waits_for_resume() -> None:
    rollout = active("Paused", stepIndex=3, message="waiting for `steward resume`")
    out = text(deployment(status(rollout)))
    lines_with(out, "state  Paused", "▶ 4. pause (until resumed)   <- paused")


def test_warming_has_no_current_step_and_no_traffic() -> None:
    out = text(deployment(status(active("Warming", stepIndex=0, weight=0, passedWindows=0, windows=[]))))
    lines_with(out, "state  Warming", "· 1. setWeight 10%", "· 2. analysis (2 windows of 30s)")
    lines_with(out, "0% to version 4, 100% to version 3")
    assert "▶" not in out and "✓" not in out
    assert "analysis windows" not in out  # no table without windows


def test_promote_full_skips_the_remaining_steps() -> None:
    # The operator leaves `weight` at the last step's; promoting moves all traffic at once.
    out = text(deployment(status(active("Promoting", stepIndex=1, weight=10, message="promoted by alice"))))
    lines_with(out, "✓ 1. setWeight 10%", "» 2. analysis", "» 4. pause (until resumed)")
    lines_with(out, "██████████████████████████████  100% to version 4, 0% to version 3")


def test_rollback_marks_the_step_that_failed() -> None:
    rollout = active("RollingBack", weight=10, passedWindows=0, failedWindows=1, windows=[window("Fail")])
    out = text(deployment(status(rollout)))
    lines_with(out, "state  RollingBack", "✗ 2. analysis (0/2 windows passed, 1 failed, 0 tolerated)")
    lines_with(out, "· 3. pause 30s", "░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░  0% to version 4, 100% to version 3")


def test_shadow_sends_callers_no_new_traffic() -> None:
    spec = {"strategy": "shadow", "shadowPercent": 25}
    rollout = active(strategy="shadow", stepIndex=0, stepCount=2, weight=0)
    out = text(deployment(status(rollout), spec))
    lines_with(out, "shadow rollout", "▶ 1. analysis (1/1 windows passed)", "· 2. pause (until resumed)")
    lines_with(out, "callers get version 3; 25% of requests are mirrored to version 4")


def test_immediate_has_no_steps() -> None:
    out = text(
        deployment(status(active("Warming", strategy="immediate", stepCount=0)), {"strategy": "immediate"})
    )
    lines_with(out, "immediate rollout", "no steps: all traffic moves once the new version is warm")


def test_no_rollout_shows_the_stable_version_and_history() -> None:
    out = text(deployment(status(None, [PROMOTED, record("RolledBack")])))
    lines_with(out, "risk/credit  no rollout in progress; stable version 3 (models:/credit-risk/3)")
    lines_with(out, "2 -> 3", "3 -> 4", "RolledBack", "rolledback: error rate 12% > 1%")
    assert "not reconciled" not in out


def test_no_rollout_yet_says_when_the_operator_is_behind() -> None:
    out = text(deployment(status(None, []), generation=2))
    lines_with(out, "the operator has not reconciled generation 2 yet (observed: 1)", "no rollouts yet")


# ---------------------------------------------------------------------------------- local store, CLI


def seed(home: Path, st: dict[str, Any] | None) -> LocalStore:
    """A deployment as the control loop leaves it: manifest applied, object admitted, status written."""
    store = LocalStore(home)
    md = deployment({})
    md = md.model_copy(update={"metadata": md.metadata.model_copy(update={"annotations": {"team": "risk"}})})
    store.apply(md)
    obj = store.admit(md, T0 - timedelta(days=1))
    if st is not None:
        store.put(replace(obj, status=ModelDeploymentStatus.model_validate(st)))
    return store


def flat(result: Any) -> str:
    """The output with rich's line wrapping (of stderr, 80 columns when piped) undone."""
    return " ".join(result.output.split())


def run(home: Path, *args: str) -> Any:
    return runner.invoke(app, [*args, "-n", NS, "--home", str(home)])


@dataclass
class FakeClock(rollout_cli.Clock):
    elapsed: float = 0.0
    sleeps: int = 0

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds
        self.sleeps += 1
        assert self.elapsed < 3600, "still polling after an hour of fake time: the loop never ends"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(rollout_cli, "CLOCK", fake)
    monkeypatch.setenv("STEWARD_ACTOR", "alice")
    monkeypatch.delenv("STEWARD_CLUSTER", raising=False)
    return fake


def test_status_command_renders_the_stored_object(tmp_path: Path, clock: FakeClock) -> None:
    seed(tmp_path, status(active()))
    result = run(tmp_path, "rollout", "status", NAME)
    assert result.exit_code == 0, result.output
    lines_with(result.output, "version 3 -> 4", "▶ 2. analysis (1/2 windows passed)", "10% to version 4")


def test_status_of_a_missing_deployment_fails(tmp_path: Path, clock: FakeClock) -> None:
    result = run(tmp_path, "rollout", "status", "nope")
    assert result.exit_code == 1
    assert "no ModelDeployment risk/nope in the local stack" in flat(result)


def test_history_command_lists_every_rollout(tmp_path: Path, clock: FakeClock) -> None:
    seed(tmp_path, status(None, [PROMOTED, record("Aborted")]))
    result = run(tmp_path, "rollout", "history", NAME)
    assert result.exit_code == 0, result.output
    lines_with(result.output, "rollouts of risk/credit", "2 -> 3", "3 -> 4", "Aborted", "2026-11-20 09:20:00")


def test_history_command_without_rollouts(tmp_path: Path, clock: FakeClock) -> None:
    seed(tmp_path, status(None, []))
    result = run(tmp_path, "rollout", "history", NAME)
    assert result.exit_code == 0
    assert "risk/credit: no rollouts yet" in result.output


@pytest.mark.parametrize(
    "command", [["promote"], ["promote", "--full"], ["abort"], ["pause"], ["resume", "--reason", "go"]]
)
def test_commands_refuse_without_a_rollout_and_write_nothing(
    tmp_path: Path, clock: FakeClock, command: list[str]
) -> None:
    store = seed(tmp_path, status(None))
    before = store.manifest_paths()[0].read_text()
    result = run(tmp_path, *command, NAME)
    assert result.exit_code == 1
    assert "no rollout of risk/credit is in progress (version 3 is stable)" in flat(result)
    assert f"nothing to {command[0]}" in flat(result)
    assert store.manifest_paths()[0].read_text() == before


def test_commands_refuse_a_missing_deployment(tmp_path: Path, clock: FakeClock) -> None:
    result = run(tmp_path, "abort", "nope")
    assert result.exit_code == 1
    assert "no ModelDeployment risk/nope" in flat(result)
    assert not (tmp_path / "manifests").exists()


def written_command(store: LocalStore) -> RolloutCommand:
    (manifest,) = load_manifests(store.manifest_paths()[0])
    return RolloutCommand.model_validate_json(manifest.metadata.annotations[ROLLOUT_COMMAND_ANNOTATION])


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (["promote"], RolloutCommandKind.PROMOTE),
        (["promote", "--full"], RolloutCommandKind.PROMOTE_FULL),
        (["abort"], RolloutCommandKind.ABORT),
        (["pause"], RolloutCommandKind.PAUSE),
        (["resume"], RolloutCommandKind.RESUME),
    ],
)
def test_no_wait_writes_the_command_for_the_loop(
    tmp_path: Path, clock: FakeClock, args: list[str], kind: RolloutCommandKind
) -> None:
    store = seed(tmp_path, status(active()))
    generation, digest = store.get(NS, NAME).generation, store.get(NS, NAME).spec_hash  # type: ignore[union-attr]
    result = run(tmp_path, *args, NAME, "--reason", "CR-42 latency [p99]", "--no-wait")
    assert result.exit_code == 0, result.output
    command = written_command(store)
    assert command.command == kind
    assert command.actor == "alice" and command.reason == "CR-42 latency [p99]"
    assert len(command.id) == 32 and int(command.id, 16) >= 0
    assert "rollout of risk/credit (3 -> 4)" in result.output and command.id in result.output
    assert clock.sleeps == 0
    # As the control loop sees it: same generation and spec, the other annotations kept, the command added.
    (manifest,) = load_manifests(store.manifest_paths()[0])
    obj = store.admit(manifest, T0)
    assert (obj.generation, obj.spec_hash) == (generation, digest)
    annotations = obj.resource().metadata.annotations
    assert annotations["team"] == "risk"
    assert json.loads(annotations[ROLLOUT_COMMAND_ANNOTATION])["id"] == command.id


def test_every_command_gets_a_fresh_id(tmp_path: Path, clock: FakeClock) -> None:
    store = seed(tmp_path, status(active()))
    ids = set()
    for _ in range(2):
        assert run(tmp_path, "pause", NAME, "--no-wait").exit_code == 0
        ids.add(written_command(store).id)
    assert len(ids) == 2
    assert written_command(store).reason is None  # no --reason: none recorded


def test_unacknowledged_command_times_out_with_exit_4(tmp_path: Path, clock: FakeClock) -> None:
    seed(tmp_path, status(active()))
    result = run(tmp_path, "abort", NAME, "--wait-s", "5")
    assert result.exit_code == 4
    assert "timed out after 5s: the operator has not acted on command" in flat(result)
    assert clock.elapsed == pytest.approx(5.0)


# ------------------------------------------------------------------------------------- scripted source


@dataclass
class ScriptedSource:
    """A deployment that changes: each get() returns the next frame (the last one stays)."""

    frames: list[ModelDeployment]
    where: str = "a scripted source"
    gets: int = 0
    annotations: list[tuple[str, str, str, str]] = field(default_factory=list)
    # Called with the written command; returns the frames that follow it (the operator's answer).
    on_annotate: Any = None

    def get(self, namespace: str, name: str) -> ModelDeployment | None:
        assert (namespace, name) == (NS, NAME)
        frame = self.frames[min(self.gets, len(self.frames) - 1)]
        self.gets += 1
        return frame

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None:
        self.annotations.append((namespace, name, key, value))
        if self.on_annotate is not None:
            command = RolloutCommand.model_validate_json(value)
            self.frames = self.frames[: self.gets] + self.on_annotate(command, value)


def use(monkeypatch: pytest.MonkeyPatch, source: S) -> S:
    monkeypatch.setattr(target_cli, "open_source", lambda home, context, kubeconfig: source)
    return source


def watch(tmp_path: Path, *extra: str) -> Any:
    return run(tmp_path, "rollout", "status", NAME, "-w", *extra)


def test_watch_follows_the_rollout_and_exits_0_when_promoted(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [
        deployment(status(active())),
        deployment(status(active())),  # unchanged: no new line
        deployment(status(active(stepIndex=2, message="analysis passed"))),
        deployment(status(active("Promoting", stepIndex=4, weight=100))),
        deployment(status(None, [PROMOTED, record("Promoted")])),
    ]
    use(monkeypatch, ScriptedSource(frames))
    result = watch(tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    head = "risk/credit 3 -> 4 Progressing step"
    assert lines[0] == f"2026-11-23 12:00:00 {head} 2/4 analysis (1/2 windows passed), weight 10%"
    assert lines[1] == f"2026-11-23 12:00:02 {head} 3/4 pause 30s, weight 10%: analysis passed"
    assert lines[2] == "2026-11-23 12:00:03 risk/credit 3 -> 4 Promoting, weight 100%"
    assert lines[3].startswith("rollout 3 -> 4 Promoted at 2026-11-23 12:00:00 UTC: promoted:")
    assert len(lines) == 4


def test_watch_logs_a_counting_message_at_most_every_30s(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = [deployment(status(active(message=f"measuring window 1 ({s}/60s)"))) for s in range(60)]
    frames = [*counting, deployment(status(None, [PROMOTED, record("Promoted")]))]
    use(monkeypatch, ScriptedSource(frames))
    result = watch(tmp_path)
    assert result.exit_code == 0
    logged = [line.split(": ", 1)[1] for line in result.output.splitlines() if "Progressing" in line]
    assert logged == ["measuring window 1 (0/60s)", "measuring window 1 (30/60s)"]


@pytest.mark.parametrize("outcome", ["RolledBack", "Aborted"])
def test_watch_exits_3_when_not_promoted(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    frames = [deployment(status(active())), deployment(status(None, [PROMOTED, record(outcome)]))]
    use(monkeypatch, ScriptedSource(frames))
    result = watch(tmp_path)
    assert result.exit_code == 3
    assert f"rollout 3 -> 4 {outcome} at 2026-11-23 12:00:00 UTC" in result.output


def test_watch_exits_3_when_a_newer_rollout_supersedes_the_watched_one(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = active(
        canary={"version": "5", "modelUri": "models:/credit-risk/5"}, fromVersion="3", startedAt=T0
    )
    frames = [
        deployment(status(active())),
        # The newer rollout's entry is the newest; the watched rollout's is the one that counts.
        deployment(status(newer, [PROMOTED, record("Superseded"), record("Promoted", "9", T0)])),
    ]
    use(monkeypatch, ScriptedSource(frames))
    result = watch(tmp_path)
    assert result.exit_code == 3
    assert "rollout 3 -> 4 Superseded" in result.output


def test_watch_times_out_with_exit_4(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, ScriptedSource([deployment(status(active("Paused", message="paused by bob")))]))
    result = watch(tmp_path, "--timeout", "10")
    assert result.exit_code == 4
    assert "timed out after 10s: the rollout of risk/credit is still Paused: paused by bob" in flat(result)
    assert clock.elapsed == pytest.approx(10.0)


def test_watch_waits_for_the_operator_to_start_the_rollout(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [
        deployment(status(None), generation=2),  # the spec changed; the operator has not seen it
        deployment(status(active()), generation=2),
        deployment(status(None, [PROMOTED, record("RolledBack")]), generation=2),
    ]
    use(monkeypatch, ScriptedSource(frames))
    result = watch(tmp_path)
    assert result.exit_code == 3
    assert "risk/credit: no rollout in progress" in result.output
    assert "rollout 3 -> 4 RolledBack" in result.output


@pytest.mark.parametrize(("history", "code"), [([PROMOTED], 0), ([PROMOTED, record("Aborted")], 3)])
def test_watch_with_nothing_in_progress_reports_the_last_rollout(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    history: list[dict[str, Any]],
    code: int,
) -> None:
    use(monkeypatch, ScriptedSource([deployment(status(None, history))]))
    result = watch(tmp_path)
    assert result.exit_code == code
    assert f"rollout {history[-1]['fromVersion']} -> {history[-1]['toVersion']} {history[-1]['outcome']}" in (
        result.output
    )
    assert clock.sleeps == 0


def test_watch_without_any_rollout_ever(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, ScriptedSource([deployment(status(None, []))]))
    result = watch(tmp_path)
    assert result.exit_code == 0
    assert "risk/credit: no rollout has run yet" in result.output


def acknowledged(st: str, message: str) -> Any:
    def answer(command: RolloutCommand, value: str) -> list[ModelDeployment]:
        annotations = {ROLLOUT_COMMAND_ANNOTATION: value}
        pending = deployment(status(active()), annotations=annotations)
        acted = deployment(
            status(active(st, message=message, handledCommand=command.id)), annotations=annotations
        )
        return [pending, pending, acted]

    return answer


def test_waits_for_the_operator_to_act_and_says_what_it_did(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = use(
        monkeypatch,
        ScriptedSource(
            [deployment(status(active()))], on_annotate=acknowledged("Paused", "paused by alice: CR-7")
        ),
    )
    result = run(tmp_path, "pause", NAME, "--reason", "CR-7")
    assert result.exit_code == 0, result.output
    ((namespace, name, key, value),) = source.annotations
    assert (namespace, name, key) == (NS, NAME, ROLLOUT_COMMAND_ANNOTATION)
    assert json.loads(value) == {
        "id": json.loads(value)["id"],
        "command": "pause",
        "actor": "alice",
        "reason": "CR-7",
    }
    assert "the operator handled it; the rollout is Paused: paused by alice: CR-7" in result.output
    assert clock.sleeps == 2


def test_a_refusal_is_reported_with_the_operators_reason(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = acknowledged("Progressing", "resume by alice ignored: the rollout is not paused")
    use(monkeypatch, ScriptedSource([deployment(status(active()))], on_annotate=refused))
    result = run(tmp_path, "resume", NAME)
    assert result.exit_code == 0
    assert "the rollout is Progressing: resume by alice ignored: the rollout is not paused" in result.output


def test_an_abort_that_ends_the_rollout_prints_the_history_entry(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ended(command: RolloutCommand, value: str) -> list[ModelDeployment]:
        return [
            deployment(
                status(None, [PROMOTED, record("Aborted")]), annotations={ROLLOUT_COMMAND_ANNOTATION: value}
            )
        ]

    use(monkeypatch, ScriptedSource([deployment(status(active()))], on_annotate=ended))
    result = run(tmp_path, "abort", NAME, "--reason", "bad latency")
    assert result.exit_code == 0
    assert "rollout 3 -> 4 Aborted at 2026-11-23 12:00:00 UTC" in result.output


def test_a_command_replaced_before_the_operator_acted_fails(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = RolloutCommand(id="bob1", command=RolloutCommandKind.ABORT, actor="bob").model_dump_json()

    def replaced(command: RolloutCommand, value: str) -> list[ModelDeployment]:
        return [deployment(status(active()), annotations={ROLLOUT_COMMAND_ANNOTATION: other})]

    use(monkeypatch, ScriptedSource([deployment(status(active()))], on_annotate=replaced))
    result = run(tmp_path, "promote", NAME)
    assert result.exit_code == 1
    assert "another command (abort by bob, id bob1)" in flat(result)


def test_replacing_a_pending_command_warns(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = RolloutCommand(id="bob1", command=RolloutCommandKind.PAUSE, actor="bob").model_dump_json()
    source = use(
        monkeypatch,
        ScriptedSource([deployment(status(active()), annotations={ROLLOUT_COMMAND_ANNOTATION: pending})]),
    )
    result = run(tmp_path, "promote", NAME, "--no-wait")
    assert result.exit_code == 0
    assert "warning: replacing a command the operator has not acted on yet (pause by bob)" in flat(result)
    assert len(source.annotations) == 1 and source.gets == 1


def test_store_annotate_keeps_spec_and_reports_a_missing_manifest(tmp_path: Path) -> None:
    store = seed(tmp_path, status(active()))
    path = store.manifest_paths()[0]
    spec_before = load_manifests(path)[0].spec
    assert store.annotate(NS, NAME, "a.io/x", "1") and store.annotate(NS, NAME, "a.io/y", "2")
    (manifest,) = load_manifests(path)
    assert manifest.spec == spec_before
    assert manifest.metadata.annotations == {"team": "risk", "a.io/x": "1", "a.io/y": "2"}
    assert not store.annotate(NS, "nope", "a.io/x", "1")


def test_local_source_shows_a_new_spec_before_the_loop_admits_it(tmp_path: Path) -> None:
    store = seed(tmp_path, status(None))
    source = LocalSource(store)
    assert source.get(NS, NAME).metadata.generation == 1  # type: ignore[union-attr]
    changed = deployment({}, {"strategy": "immediate"})
    store.apply(
        changed.model_copy(update={"metadata": changed.metadata.model_copy(update={"annotations": {}})})
    )
    md = source.get(NS, NAME)
    assert md is not None
    # As on a cluster: the new generation shows at once, so `status -w` waits for the operator to see it.
    assert (md.metadata.generation, md.status.observed_generation) == (2, 1)
    assert md.metadata.annotations == {}  # the manifest's, not the ones last admitted
    assert source.get(NS, "nope") is None


def test_local_source_refuses_to_annotate_a_removed_manifest(tmp_path: Path) -> None:
    store = seed(tmp_path, status(active()))
    store.manifest_paths()[0].unlink()
    with pytest.raises(SourceError, match=r"has no manifest in .*steward dev apply"):
        LocalSource(store).annotate(NS, NAME, ROLLOUT_COMMAND_ANNOTATION, "{}")


def test_cluster_mode_with_an_unreadable_kubeconfig_says_what_to_do(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    result = runner.invoke(app, ["rollout", "status", NAME, "--kubeconfig", str(missing)])
    assert result.exit_code == 1
    assert f"cannot load the Kubernetes configuration from {missing}" in flat(result)
    monkeypatch.setenv("STEWARD_CLUSTER", "1")
    monkeypatch.setenv("KUBECONFIG", str(missing))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = runner.invoke(app, ["pause", NAME])
    assert result.exit_code == 1
    assert "unset STEWARD_CLUSTER for the local stack" in flat(result)


def test_watch_on_a_terminal_redraws_the_full_view(clock: FakeClock) -> None:
    frames = [deployment(status(active())), deployment(status(None, [PROMOTED, record("RolledBack")]))]
    screen = io.StringIO()
    out = Console(file=screen, force_terminal=True, width=160)
    code = rollout_cli.watch_rollout(ScriptedSource(frames), NS, NAME, None, out, clock)
    assert code == 3
    shown = screen.getvalue()
    assert "▶ 2. analysis (1/2 windows passed)" in shown  # the live view, not a log line
    assert "rollout 3 -> 4 RolledBack" in Text.from_ansi(shown).plain


# ------------------------------------------------------------------------ against the real state machine


class WorldSource:
    """The operator's own decide(), one pass per read, in the pretend world of tests/unit/world.py."""

    where = "a pretend world"

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.world = settled()
        self.world.change_spec({"model": {"name": "credit-risk", "version": "4"}}, resolved("4"))
        if behaviour is not None:
            self.world.behaviour["4"] = behaviour
        self.world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)

    def get(self, namespace: str, name: str) -> ModelDeployment | None:
        self.world.step()
        return self.world.resource

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None:
        self.world.annotate(key, value)


def test_pause_resume_and_watch_drive_the_operator_to_promotion(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, WorldSource())
    result = run(tmp_path, "pause", NAME, "--reason", "CR-1")
    assert result.exit_code == 0, result.output
    assert "the rollout is Paused: paused by alice (declared): CR-1" in result.output
    result = run(tmp_path, "resume", NAME)
    assert "the operator handled it; the rollout is Progressing" in flat(result)
    result = run(tmp_path, "resume", NAME)
    assert "resume by alice (declared) ignored: the rollout is not paused" in flat(result)
    result = watch(tmp_path)
    assert result.exit_code == 0, result.output
    assert "rollout 3 -> 4 Promoted" in result.output


def test_watch_exits_3_when_the_operator_rolls_a_failing_canary_back(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, WorldSource(Behaviour(error_share=0.2)))
    result = watch(tmp_path)
    assert result.exit_code == 3
    assert "RollingBack, weight 0%: analysis failed: error rate 25%" in result.output
    assert "rollout 3 -> 4 RolledBack" in result.output

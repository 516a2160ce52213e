"""How a rollout looks in the terminal: pure functions from a ModelDeployment and the time to renderables.

Nothing here reads a clock, a file or the network, so every state renders the same in a test as on a screen.
Text from the status goes in as `Text`, never as markup, so a message holding "[10%]" prints as written.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from steward.api.model_deployment import ModelDeployment
from steward.api.rollout import (
    ActiveRollout,
    Analysis,
    Outcome,
    RolloutRecord,
    RolloutState,
    RolloutStep,
    Strategy,
    Verdict,
    VersionWindow,
    WindowResult,
    duration_s,
)

DONE, CURRENT, TO_COME, SKIPPED, FAILED = "✓", "▶", "·", "»", "✗"
BAR_WIDTH = 30
HISTORY_IN_STATUS = 3
_OUTCOME_STYLE = {
    Outcome.PROMOTED: "green",
    Outcome.ROLLED_BACK: "red",
    Outcome.ABORTED: "red",
    Outcome.SUPERSEDED: "yellow",
}
_VERDICT_STYLE = {Verdict.PASS: "green", Verdict.FAIL: "red", Verdict.INCONCLUSIVE: "yellow"}
_STATE_STYLE = {
    RolloutState.WARMING: "cyan",
    RolloutState.PROGRESSING: "cyan",
    RolloutState.PAUSED: "yellow",
    RolloutState.PROMOTING: "green",
    RolloutState.ROLLING_BACK: "red",
}


def utc(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return f"{aware.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def span(seconds: float) -> str:
    """47 -> "47s", 150 -> "2m30s", 7300 -> "2h01m": short enough for a status line."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _since(moment: datetime, now: datetime) -> float:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (now - aware).total_seconds()


def windows_needed(step: RolloutStep, analysis: Analysis) -> int:
    return (step.analysis.windows if step.analysis else None) or analysis.windows


def step_label(
    step: RolloutStep, analysis: Analysis, rollout: ActiveRollout | None = None, now: datetime | None = None
) -> str:
    """One step in words; with the rollout (for the current step) also how far it has got."""
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}%"
    if step.pause is not None:
        if step.pause.duration is None:
            return "pause (until resumed)"
        label = f"pause {step.pause.duration}"
        if rollout is not None and now is not None and rollout.state == RolloutState.PROGRESSING:
            left = duration_s(step.pause.duration) - _since(rollout.step_started_at, now)
            label += f" ({span(left)} left)"
        return label
    needed = windows_needed(step, analysis)
    if rollout is None:
        return f"analysis ({needed} window{'' if needed == 1 else 's'} of {analysis.interval})"
    label = f"analysis ({rollout.passed_windows}/{needed} windows passed"
    if rollout.failed_windows:
        label += f", {rollout.failed_windows} failed, {analysis.failure_limit} tolerated"
    return label + ")"


def step_marker(index: int, rollout: ActiveRollout) -> str:
    """Done, current or to come; a promotion skips the steps not yet run, a rollback fails the current one."""
    if rollout.state == RolloutState.WARMING or index > rollout.step_index:
        return SKIPPED if rollout.state == RolloutState.PROMOTING else TO_COME
    if index < rollout.step_index:
        return DONE
    if rollout.state == RolloutState.PROMOTING:
        return SKIPPED
    return FAILED if rollout.state == RolloutState.ROLLING_BACK else CURRENT


def steps_view(md: ModelDeployment, rollout: ActiveRollout, now: datetime) -> RenderableType:
    steps = md.spec.rollout.effective_steps
    if not steps:
        return Text("  no steps: all traffic moves once the new version is warm")
    analysis = md.spec.rollout.analysis
    lines = Text()
    for index, step in enumerate(steps):
        marker = step_marker(index, rollout)
        current = marker == CURRENT
        here = marker in (CURRENT, FAILED)
        label = step_label(step, analysis, rollout if here else None, now if here else None)
        style = "bold" if current else ("dim" if marker in (TO_COME, SKIPPED) else "")
        lines.append(f"  {marker} {index + 1}. {label}", style=style)
        if current and rollout.state == RolloutState.PAUSED:
            lines.append("   <- paused", style="yellow")
        if index < len(steps) - 1:
            lines.append("\n")
    return lines


def live_weight(rollout: ActiveRollout) -> int:
    """The new version's share of live traffic now: `weight` is the last step's; finishing moves it all."""
    if rollout.state == RolloutState.PROMOTING:
        return 100
    if rollout.state in (RolloutState.WARMING, RolloutState.ROLLING_BACK):
        return 0
    return rollout.weight


def weight_bar(md: ModelDeployment, rollout: ActiveRollout) -> Text:
    """The new version's share of live traffic as a bar; a shadow rollout sends callers none of it."""
    new, stable = rollout.canary.version, rollout.from_version
    weight = live_weight(rollout)
    if rollout.strategy == Strategy.SHADOW and weight == 0 and rollout.state != RolloutState.ROLLING_BACK:
        return Text(
            f"  callers get version {stable}; {md.spec.rollout.shadow_percent}% of requests are mirrored "
            f"to version {new}, whose answers are compared, not returned"
        )
    filled = round(BAR_WIDTH * weight / 100)
    return Text.assemble(
        "  ",
        ("█" * filled, "green"),
        ("░" * (BAR_WIDTH - filled), "dim"),
        f"  {weight}% to version {new}, {100 - weight}% to version {stable}",
    )


def _pair(canary: str, stable: str) -> str:
    return f"{canary} / {stable}"


def _rate(window: VersionWindow) -> str:
    return "-" if window.error_rate is None else f"{window.error_rate * 100:.2f}%"


def _rejected(window: VersionWindow) -> str:
    return "-" if window.rejection_rate is None else f"{window.rejection_rate * 100:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def windows_table(windows: list[WindowResult]) -> Table:
    table = Table(
        title="analysis windows (new / stable)", box=None, header_style="bold", title_justify="left"
    )
    columns = (
        "ENDED (UTC)",
        "VERDICT",
        "REQUESTS",
        "ERROR RATE",
        "REJECTED",
        "P95 MS",
        "P99 MS",
        "DISAGREEMENT",
    )
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("SUMMARY", overflow="fold")
    for w in windows:
        disagreement = "-" if w.disagreement is None else f"{w.disagreement * 100:.1f}% of {w.compared}"
        table.add_row(
            utc(w.ended_at),
            Text(w.verdict.value, style=_VERDICT_STYLE[w.verdict]),
            _pair(str(w.canary.requests), str(w.stable.requests)),
            _pair(_rate(w.canary), _rate(w.stable)),
            _pair(_rejected(w.canary), _rejected(w.stable)),
            _pair(_ms(w.canary.latency_p95_ms), _ms(w.stable.latency_p95_ms)),
            _pair(_ms(w.canary.latency_p99_ms), _ms(w.stable.latency_p99_ms)),
            disagreement,
            Text(w.summary),
        )
    return table


def history_table(records: list[RolloutRecord], title: str = "rollout history") -> Table:
    table = Table(title=title, box=None, header_style="bold", title_justify="left")
    for column in ("STARTED (UTC)", "FINISHED (UTC)", "VERSIONS", "STRATEGY", "OUTCOME"):
        table.add_column(column, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for r in records:
        table.add_row(
            utc(r.started_at),
            utc(r.finished_at),
            f"{r.from_version} -> {r.to_version}",
            r.strategy.value,
            Text(r.outcome.value, style=_OUTCOME_STYLE[r.outcome]),
            Text(r.reason),
        )
    return table


def outcome_line(record: RolloutRecord) -> Text:
    return Text.assemble(
        f"rollout {record.from_version} -> {record.to_version} ",
        (record.outcome.value, f"bold {_OUTCOME_STYLE[record.outcome]}"),
        f" at {utc(record.finished_at)} UTC: {record.reason}",
    )


def operator_behind(md: ModelDeployment) -> bool:
    """The spec changed and the operator has not reconciled it yet: a rollout may be about to start."""
    generation = md.metadata.generation
    return generation is not None and (md.status.observed_generation or 0) < generation


def _history_part(md: ModelDeployment, limit: int | None) -> RenderableType:
    records = md.status.rollout_history
    if not records:
        return Text("no rollouts yet", style="dim")
    shown = records if limit is None else records[-limit:]
    title = "rollout history" if len(shown) == len(records) else f"rollout history (last {len(shown)})"
    return history_table(shown, title)


def rollout_view(md: ModelDeployment, now: datetime) -> RenderableType:
    """Everything `steward rollout status` shows, for a deployment with or without a rollout in progress."""
    rollout = md.status.rollout
    if rollout is None:
        return idle_view(md)
    head = Text.assemble(
        (md.key, "bold"),
        f"  {rollout.strategy.value} rollout  version {rollout.from_version} -> {rollout.canary.version}\n",
        "state  ",
        (rollout.state.value, f"bold {_STATE_STYLE[rollout.state]}"),
        *([": ", rollout.message] if rollout.message else []),
        f"\nstarted {utc(rollout.started_at)} UTC ({span(_since(rollout.started_at, now))} ago)",
    )
    if rollout.step_count and rollout.state in (RolloutState.PROGRESSING, RolloutState.PAUSED):
        head.append(
            f"; step {min(rollout.step_index + 1, rollout.step_count)}/{rollout.step_count} "
            f"for {span(_since(rollout.step_started_at, now))}"
        )
    parts: list[RenderableType] = [
        head,
        Text("steps", style="bold"),
        steps_view(md, rollout, now),
        Text("traffic", style="bold"),
        weight_bar(md, rollout),
    ]
    if rollout.windows:
        parts.append(windows_table(rollout.windows))
    parts.append(_history_part(md, HISTORY_IN_STATUS))
    return Group(*parts)


def idle_view(md: ModelDeployment) -> RenderableType:
    stable = md.status.stable
    serving = f"stable version {stable.version} ({stable.model_uri})" if stable else "no version serving yet"
    head = Text.assemble((md.key, "bold"), f"  no rollout in progress; {serving}")
    parts: list[RenderableType] = [head]
    if operator_behind(md):
        parts.append(
            Text(
                f"the operator has not reconciled generation {md.metadata.generation} yet "
                f"(observed: {md.status.observed_generation or 'none'})",
                style="yellow",
            )
        )
    parts.append(_history_part(md, HISTORY_IN_STATUS))
    return Group(*parts)


def progress_key(md: ModelDeployment) -> str:
    """Where the rollout stands, without its message: a log gets a new line when this changes."""
    rollout = md.status.rollout
    if rollout is None:
        return f"{md.key}: no rollout in progress"
    steps = md.spec.rollout.effective_steps
    step = ""
    if rollout.state in (RolloutState.PROGRESSING, RolloutState.PAUSED) and rollout.step_index < len(steps):
        current = steps[rollout.step_index]
        label = step_label(current, md.spec.rollout.analysis, rollout if current.analysis else None)
        step = f" step {rollout.step_index + 1}/{len(steps)} {label}"
    return (
        f"{md.key} {rollout.from_version} -> {rollout.canary.version} {rollout.state.value}"
        f"{step}, weight {live_weight(rollout)}%"
    )


def progress_line(md: ModelDeployment) -> str:
    """One line for logs (CI), where a live display cannot redraw."""
    rollout = md.status.rollout
    message = f": {rollout.message}" if rollout is not None and rollout.message else ""
    return progress_key(md) + message

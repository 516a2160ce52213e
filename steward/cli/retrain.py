"""`steward retrain NAME --reason ...`, `steward retrain approve NAME --reason ...` and `steward lineage NAME
VERSION`.

A command is a `RetrainingCommand` written into the `steward.io/retraining-command` annotation with who
(STEWARD_ACTOR or the login name) and why; the operator acts on each id once and records it in
`status.retraining.handledCommand`, also when it refuses (the reason is then in `status.retraining.message`).
The lineage of a version is read from the audit trail, never from the resource: it outlives the resource.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from steward.api.model_deployment import ACTOR_ANNOTATION
from steward.api.retraining import (
    RETRAINING_COMMAND_ANNOTATION,
    RetrainingCommand,
    RetrainingCommandKind,
    RetrainingState,
)
from steward.audit.records import AuditAction, AuditRecord
from steward.cli.audit import (
    DEFAULT_S3_PREFIX,
    S3Bucket,
    S3Endpoint,
    S3Prefix,
    _deployment,
    _read,
    audit_store,
)
from steward.cli.common import DEFAULT_HOME, Home, Namespace, console, err, fail, who_and_why
from steward.cli.sources import DeploymentSource, SourceError
from steward.cli.target import CommandReason, Context, Kubeconfig, NoWait, WaitS, get_or_fail, open_or_fail

POLL_INTERVAL_S = 1.0
EXIT_TIMED_OUT = 4
RETRAINING_ACTIONS = (
    AuditAction.RETRAINING_REQUESTED,
    AuditAction.RETRAINING_APPROVED,
    AuditAction.RETRAINING_STARTED,
    AuditAction.RETRAINING_FINISHED,
    AuditAction.CANDIDATE_EVALUATED,
)


def send(
    kind: RetrainingCommandKind,
    name: str,
    namespace: str,
    reason: str | None,
    wait_s: float,
    no_wait: bool,
    source: DeploymentSource,
) -> int:
    md = get_or_fail(source, namespace, name)
    if md.spec.retraining is None:
        fail(f"{md.key} has no spec.retraining: add it to the manifest first (see docs/retraining.md)")
    state = md.status.retraining.state if md.status.retraining else RetrainingState.IDLE
    if kind == RetrainingCommandKind.APPROVE and state != RetrainingState.AWAITING_APPROVAL:
        fail(f"no run of {md.key} awaits approval (retraining is {state.value})")
    command = RetrainingCommand(
        id=uuid.uuid4().hex, command=kind, actor=who_and_why(reason)[ACTOR_ANNOTATION], reason=reason or None
    )
    try:
        source.annotate(
            namespace, name, RETRAINING_COMMAND_ANNOTATION, command.model_dump_json(exclude_none=True)
        )
    except SourceError as exc:
        fail(str(exc))
    console.print(f"asked the operator to {kind.value} {escape(md.key)}; command {command.id}")
    if no_wait:
        return 0
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = get_or_fail(source, namespace, name).status.retraining
        if status is not None and status.handled_command == command.id:
            console.print(
                f"the operator handled it; retraining is {status.state.value}: {escape(status.message)}"
            )
            return 0
        time.sleep(POLL_INTERVAL_S)
    err.print(
        f"[bold red]timed out[/] after {wait_s:g}s: the operator has not acted on command {command.id} yet; "
        "it stays in the annotation and is acted on at the operator's next pass"
    )
    return EXIT_TIMED_OUT


def retrain(
    name: Annotated[str, typer.Argument(help="ModelDeployment to retrain, or `approve` followed by it.")],
    deployment: Annotated[str | None, typer.Argument(help="With `approve`: the ModelDeployment.")] = None,
    reason: CommandReason = None,
    namespace: Namespace = "default",
    wait_s: WaitS = 30.0,
    no_wait: NoWait = False,
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Ask for a retraining run of NAME (`steward retrain NAME --reason ...`), or approve the run that waits
    for approval (`steward retrain approve NAME --reason ...`). Who and why go to the audit trail."""
    if deployment is not None and name != "approve":
        fail(
            f"unexpected argument {deployment!r}: "
            "use `steward retrain NAME` or `steward retrain approve NAME`"
        )
    kind = RetrainingCommandKind.APPROVE if deployment is not None else RetrainingCommandKind.RETRAIN
    target = deployment if deployment is not None else name
    code = send(kind, target, namespace, reason, wait_s, no_wait, open_or_fail(home, context, kubeconfig))
    if code:
        raise typer.Exit(code)


def lineage_records(records: list[AuditRecord], version: str) -> list[AuditRecord]:
    """The chain behind `version`: the runs that produced it (request, approval, start, end, evaluation,
    linked by submission id and trigger cause), then what the rollout did with it."""
    made = {
        str(r.evidence.get("submission_id"))
        for r in records
        if r.action in (AuditAction.RETRAINING_FINISHED, AuditAction.CANDIDATE_EVALUATED)
        and r.model is not None
        and r.model.to_version == version
    }
    causes = {
        str(r.evidence.get("trigger", {}).get("cause"))
        for r in records
        if r.action == AuditAction.RETRAINING_FINISHED and str(r.evidence.get("submission_id")) in made
    }

    def about(r: AuditRecord) -> bool:
        if r.action in RETRAINING_ACTIONS:
            return str(r.evidence.get("submission_id")) in made or r.cause in causes
        return r.model is not None and r.model.to_version == version

    chain = [r for r in records if about(r)]
    return chain


def lineage(
    name: Annotated[str, typer.Argument(help="ModelDeployment whose trail to read.")],
    version: Annotated[str, typer.Argument(help="Model version, e.g. 5.")],
    namespace: Namespace = "default",
    home: Home = DEFAULT_HOME,
    s3_bucket: S3Bucket = None,
    s3_prefix: S3Prefix = DEFAULT_S3_PREFIX,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Why VERSION exists and what happened to it: the breach or person that asked for its training, who
    approved it, the job and its data, its offline evaluation, then its rollout, from the audit trail."""
    deployment = _deployment(name, namespace)
    records = _read(audit_store(home, s3_bucket, s3_prefix, s3_endpoint), deployment)
    chain = lineage_records(records, version)
    if not chain:
        fail(f"the audit trail of {deployment} says nothing about version {version}")
    table = Table(title=f"lineage of {deployment} version {version}")
    for column in ("seq", "time", "action", "actor", "what", "hash"):
        table.add_column(column, overflow="fold")
    for r in chain:
        table.add_row(
            str(r.seq),
            r.timestamp.isoformat(timespec="seconds"),
            r.action.value,
            escape(r.actor),
            escape(r.reason),
            r.hash[:12],
        )
    console.print(table)
    finished = next((r for r in chain if r.action == AuditAction.RETRAINING_FINISHED), None)
    if finished is not None:
        lines = finished.evidence.get("lineage") or {}
        for key in ("steward.trigger", "steward.parent_version", "steward.data.window"):
            if key in lines:
                console.print(f"{key}: {escape(str(lines[key]))}")
        console.print(f"data files: {len(finished.evidence.get('data_uris') or [])}")

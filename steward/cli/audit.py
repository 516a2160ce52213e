"""`steward audit` (verify, export) for auditors and `steward history` for model owners.

Both read the audit trail the operator writes, from the local stack's folder or from the operator's S3 bucket
(the same STEWARD_AUDIT_S3_* settings); nothing here writes to it.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from steward.audit.export import to_csv, to_html, to_json
from steward.audit.records import AuditRecord
from steward.audit.scan import read_window, verify_stored
from steward.audit.store import LocalFolderStore, StoreUnavailable, TrailStore, parse_record
from steward.audit.verify import Break, Verification, verify
from steward.cli.common import DEFAULT_HOME, Home, Namespace, console, err, fail
from steward.cli.sources import DeploymentSource, SourceError, open_source
from steward.cli.target import Context, Kubeconfig

audit = typer.Typer(
    help="The audit trail: check its hash chain, export it for auditors.", no_args_is_help=True
)


KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="File holding the audit HMAC key (as mounted from its Secret), to check signatures too.",
    ),
]

S3Bucket = Annotated[
    str | None,
    typer.Option(
        "--s3-bucket",
        envvar="STEWARD_AUDIT_S3_BUCKET",
        help="Read the trails from this S3 bucket, where the operator writes them, not from --home.",
    ),
]
S3Prefix = Annotated[
    str,
    typer.Option(
        "--s3-prefix", envvar="STEWARD_AUDIT_S3_PREFIX", help="Key prefix of the trails in the bucket."
    ),
]
S3Endpoint = Annotated[
    str | None,
    typer.Option(
        "--s3-endpoint",
        envvar="STEWARD_AUDIT_S3_ENDPOINT",
        help="S3 endpoint URL (MinIO, a test server); credentials come from the usual AWS_* settings.",
    ),
]
DEFAULT_S3_PREFIX = "steward-audit"  # the operator's default (OperatorConfig.audit_s3_prefix)

FORMATS = ("json", "csv", "html")
# A Kubernetes object name (DNS subdomain): also keeps names from walking out of the store's folder.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def audit_store(
    home: Path,
    s3_bucket: str | None = None,
    s3_prefix: str = DEFAULT_S3_PREFIX,
    s3_endpoint: str | None = None,
) -> TrailStore:
    """The store the trails are read from: the operator's S3 bucket if one is named, else the local stack's
    audit folder (`<home>/audit/<namespace>/<name>/<seq>.json`)."""
    if s3_bucket:
        from steward.audit.s3_store import S3Store

        return S3Store(s3_bucket, s3_prefix, endpoint_url=s3_endpoint)
    return LocalFolderStore(home / "audit")


def _where(home: Path, s3_bucket: str | None, s3_prefix: str) -> str:
    return f"s3://{s3_bucket}/{s3_prefix.strip('/')}" if s3_bucket else str(home / "audit")


def _deployment(name: str, namespace: str) -> str:
    for label, value in (("name", name), ("namespace", namespace)):
        if not _NAME.match(value):
            fail(f"invalid {label} {value!r}: expected a Kubernetes object name")
    return f"{namespace}/{name}"


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _read(store: TrailStore, deployment: str) -> list[AuditRecord]:
    """The trail, or fail() if there is none or it cannot be read."""
    try:
        records = store.read(deployment)
    except (StoreUnavailable, OSError, ValueError) as exc:
        fail(f"cannot read the audit trail of {deployment}: {_one_line(exc)}")
    if not records:
        _no_trail(store, deployment)
    return records


def _no_trail(store: TrailStore, deployment: str) -> NoReturn:
    known = store.deployments()
    hint = f"trails: {', '.join(known[:10])}{', ...' if len(known) > 10 else ''}" if known else "no trails"
    fail(f"no audit trail for {deployment} ({hint})")


def _key(key_file: Path | None) -> bytes | None:
    if key_file is None:
        return None
    try:
        # Stripped like the operator does, so a key file ending in a newline signs the same.
        key = key_file.read_bytes().strip()
    except OSError as exc:
        fail(f"cannot read the key file {key_file}: {exc.strerror}")
    if not key:
        fail(f"the key file {key_file} is empty")
    return key


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO date or time (naive means UTC), or a duration back from `now`: 30m, 24h, 7d, 2w."""
    value = text.strip()
    match = _DURATION.match(value.lower())
    try:
        if match:
            return now - timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])
        return _utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f"--since {text!r}: use an ISO date or time (2026-11-01, 2026-11-01T12:00Z) "
            "or a duration (30m, 24h, 7d, 2w)"
        ) from exc


def versions(record: AuditRecord) -> str:
    return record.model.span() if record.model else ""


def _report(result: Verification) -> None:
    brk = result.first_break
    if brk is None:
        console.print(f"[green]ok[/]      {escape(result.deployment)}  {result.records} records")
    else:
        console.print(
            f"[bold red]BROKEN[/]  {escape(result.deployment)}  at position {brk.position} "
            f"(seq {brk.seq}, {brk.kind}): {escape(brk.message)}"
        )


def _truncation(recorded: int, last: int) -> str:
    """A chain cut at its end still verifies; the resource's status remembers how far it went."""
    if recorded <= last:
        return ""
    return (
        f"the trail ends at seq {last} but status.audit.recordedSeq is {recorded}: "
        f"records {last + 1}..{recorded} are missing from the store (deleted or not replicated)"
    )


@audit.command("verify")
def verify_command(
    name: Annotated[str | None, typer.Argument(help="ModelDeployment whose trail to check.")] = None,
    all_trails: Annotated[bool, typer.Option("--all", help="Check every trail in the store.")] = False,
    namespace: Namespace = "default",
    key_file: KeyFile = None,
    home: Home = DEFAULT_HOME,
    s3_bucket: S3Bucket = None,
    s3_prefix: S3Prefix = DEFAULT_S3_PREFIX,
    s3_endpoint: S3Endpoint = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Walk the hash chain of one trail (or all): exit 1 at the first break, if a trail ends before its
    resource's status.audit.recordedSeq (the local stack's, or the cluster's with --context), or if there is
    no trail."""
    if (name is None) == (not all_trails):
        fail("give a NAME or --all (not both)")
    key = _key(key_file)
    store = audit_store(home, s3_bucket, s3_prefix, s3_endpoint)
    if name is not None:
        trails = [_deployment(name, namespace)]
    else:
        try:
            trails = store.deployments()
        except (StoreUnavailable, OSError) as exc:
            fail(f"cannot list the audit trails: {_one_line(exc)}")
        if not trails:
            fail(f"no audit trails under {_where(home, s3_bucket, s3_prefix)}")
    try:
        source = open_source(home, context, kubeconfig)
    except SourceError as exc:
        fail(str(exc))
    broken = 0
    for deployment in trails:
        try:
            # Streamed: one record at a time, so a million-record trail is never held in memory.
            result = verify_stored(store, deployment, key)
            last = _last_seq(store, deployment, result)
        except (StoreUnavailable, OSError, ValueError) as exc:
            if name is not None:
                fail(f"cannot read the audit trail of {deployment}: {_one_line(exc)}")
            console.print(f"[bold red]BROKEN[/]  {escape(deployment)}  unreadable: {escape(_one_line(exc))}")
            broken += 1
            continue
        if name is not None and result.records == 0:
            _no_trail(store, deployment)
        _report(result)
        try:
            truncated = _truncation(_recorded_seq(source, deployment), last)
        except SourceError as exc:
            truncated = f"cannot check for missing records at the end: {_one_line(exc)}"
        if truncated:
            console.print(f"[bold red]BROKEN[/]  {escape(deployment)}  {escape(truncated)}")
        broken += 0 if result.ok and not truncated else 1
    if name is None:
        console.print(f"{len(trails)} trail(s), {broken} broken")
    if broken:
        raise typer.Exit(1)


def _last_seq(store: TrailStore, deployment: str, result: Verification) -> int:
    """The seq of the trail's last record (0: none). The walk knows it when it went to the end; after a
    break, the last record is read on its own."""
    if result.ok:
        return result.last_seq or 0
    names = store.record_names(deployment)
    for where, raw in store.read_raw(deployment, names[-1:]):
        return parse_record(raw, where, deployment).seq
    return 0


def _recorded_seq(source: DeploymentSource, deployment: str) -> int:
    """How far the resource's status says its trail went (0 once the resource is gone)."""
    namespace, name = deployment.split("/", 1)
    md = source.get(namespace, name)
    audit_status = md.status.audit if md is not None and md.status is not None else None
    return audit_status.recorded_seq if audit_status is not None else 0


@audit.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="ModelDeployment whose trail to export.")],
    output_format: Annotated[str, typer.Option("--format", "-f", help="json, csv or html.")],
    namespace: Namespace = "default",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    key_file: KeyFile = None,
    home: Home = DEFAULT_HOME,
    s3_bucket: S3Bucket = None,
    s3_prefix: S3Prefix = DEFAULT_S3_PREFIX,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Write one trail as JSON or CSV (both read back exactly) or as an HTML page for an auditor."""
    if output_format not in FORMATS:
        fail(f"unknown format {output_format!r}: use json, csv or html")
    deployment = _deployment(name, namespace)
    key = _key(key_file)
    records = _read(audit_store(home, s3_bucket, s3_prefix, s3_endpoint), deployment)
    result = verify(deployment, records, key)
    try:
        if output_format == "json":
            text = to_json(records) + "\n"
        elif output_format == "csv":
            text = to_csv(records)
        else:
            text = to_html(deployment, records, result)
    except ValueError as exc:
        fail(str(exc))
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8", newline="")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror}")
        err.print(f"wrote {len(records)} records of {escape(deployment)} to {escape(str(output))}")
    if result.first_break is not None:
        err.print(f"[bold red]warning:[/] the chain is broken: {escape(result.first_break.message)}")


def _window(store: TrailStore, deployment: str, cutoff: datetime) -> tuple[list[AuditRecord], Break | None]:
    """The records since `cutoff`, found by seeking (a long trail is not read whole), and the first break
    in the part read."""
    try:
        window = read_window(store, deployment, cutoff)
    except (StoreUnavailable, OSError, ValueError) as exc:
        fail(f"cannot read the audit trail of {deployment}: {_one_line(exc)}")
    if window.stored == 0:
        _no_trail(store, deployment)
    return window.records, window.verification.first_break


HISTORY_COLUMNS = ("TIME (UTC)", "SEQ", "ACTOR", "ACTION", "MODEL", "VERSIONS", "REASON")
# Rich lays a table out at about 1 ms a row: past this many rows (a day of a busy trail) the same columns are
# printed plainly, aligned in one pass, the reason unwrapped.
MAX_RICH_ROWS = 500


def _print_history(title: str, shown: list[AuditRecord]) -> None:
    rows = [
        (
            f"{_utc(r.timestamp):%Y-%m-%d %H:%M:%S}",
            str(r.seq),
            r.actor,
            str(r.action),
            r.model.name if r.model else "",
            versions(r),
            r.reason,
        )
        for r in shown
    ]
    if len(rows) > MAX_RICH_ROWS:
        widths = [
            max(len(row[i]) for row in [HISTORY_COLUMNS, *rows]) for i in range(len(HISTORY_COLUMNS) - 1)
        ]
        lines = [title] + [
            "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
            for row in [HISTORY_COLUMNS, *rows]
        ]
        console.file.write("\n".join(lines) + "\n")
        return
    table = Table(title=escape(title), box=None, header_style="bold", title_justify="left")
    for column in HISTORY_COLUMNS[:-1]:
        table.add_column(column, no_wrap=True)
    table.add_column(HISTORY_COLUMNS[-1], overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def history(
    name: Annotated[str, typer.Argument(help="ModelDeployment whose history to show.")],
    namespace: Namespace = "default",
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only records at or after this: 2026-11-01, 2026-11-01T12:00Z, 24h, 7d."
        ),
    ] = None,
    home: Home = DEFAULT_HOME,
    s3_bucket: S3Bucket = None,
    s3_prefix: S3Prefix = DEFAULT_S3_PREFIX,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """What happened to a ModelDeployment, from its audit trail: who did what, to which version, and why.

    With --since, the records shown are checked (and their link to the one before them), not the whole
    trail: `steward audit verify` checks every record."""
    deployment = _deployment(name, namespace)
    cutoff: datetime | None = None
    if since is not None:
        try:
            cutoff = parse_since(since, datetime.now(UTC))
        except ValueError as exc:
            fail(str(exc))
    store = audit_store(home, s3_bucket, s3_prefix, s3_endpoint)
    if cutoff is None:
        records = _read(store, deployment)
        shown, brk = records, verify(deployment, records).first_break
    else:
        shown, brk = _window(store, deployment, cutoff)
    if not shown:
        console.print(f"no records of {escape(deployment)} since {cutoff:%Y-%m-%d %H:%M:%S} UTC")
    else:
        title = f"{deployment}" + (f" since {cutoff:%Y-%m-%d %H:%M:%S} UTC" if cutoff else "")
        _print_history(title, shown)
    if brk is not None:
        err.print(
            f"[bold red]warning:[/] the trail's chain is broken at position {brk.position}; "
            f"see `steward audit verify {escape(name)} -n {escape(namespace)}`"
        )

"""`steward feedback NAME -f outcomes.csv|parquet`: the true outcomes of served requests, for quality and
fairness monitors, which join them with the captured requests by request id (the answer's `X-Request-Id`).

One Parquet file per call, under `<store>/<ns>/<name>/outcomes/date=<today>/`; a label sent again for the
same request later replaces the first (monitors keep the one received last).
"""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from steward.api.monitor_results import OutcomeColumn, outcomes_prefix
from steward.cli.common import DEFAULT_HOME, Home, Namespace, console, fail

if TYPE_CHECKING:  # pandas costs seconds to import: every steward command would pay for it
    import pandas as pd

STORE_ENV = "STEWARD_MONITORING_URI"
MAX_ROWS_NAMED = 5


class OutcomeError(ValueError):
    """The file is not an outcomes table: the message says what to fix."""


def _rows(mask: pd.Series) -> str:
    # Line numbers as a spreadsheet shows a CSV: the header is line 1.
    lines = [str(i + 2) for i in mask[mask].index[:MAX_ROWS_NAMED]]
    more = f" and {int(mask.sum()) - MAX_ROWS_NAMED} more" if mask.sum() > MAX_ROWS_NAMED else ""
    return ", ".join(lines) + more


def read_outcomes(path: Path) -> pd.DataFrame:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Ids stay text: "007" is not 7.
            return pd.read_csv(path, dtype={OutcomeColumn.REQUEST_ID: str}, keep_default_na=True)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except FileNotFoundError as exc:
        raise OutcomeError(f"{path}: no such file") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise OutcomeError(f"{path}: not a readable {suffix[1:]} file: {exc}") from exc
    raise OutcomeError(f"{path}: expected a .csv or .parquet file")


def validated(frame: pd.DataFrame, received_at: datetime) -> pd.DataFrame:
    import pandas as pd

    """The outcomes as the store keeps them (OutcomeColumn columns), or an OutcomeError naming the problem."""
    required = [OutcomeColumn.REQUEST_ID, OutcomeColumn.LABEL]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise OutcomeError(
            f"missing column(s) {missing}: an outcomes file has {required} and optionally "
            f"{OutcomeColumn.SENSITIVE}<feature> columns; found {list(frame.columns)[:20]}"
        )
    unknown = [
        c for c in frame.columns if c not in required and not str(c).startswith(OutcomeColumn.SENSITIVE)
    ]
    if unknown:
        raise OutcomeError(
            f"unknown column(s) {unknown}: only {required} and {OutcomeColumn.SENSITIVE}<feature> are read"
        )
    if frame.empty:
        raise OutcomeError("the file has no rows")
    frame = frame.reset_index(drop=True)
    ids = frame[OutcomeColumn.REQUEST_ID]
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        raise OutcomeError(f"empty {OutcomeColumn.REQUEST_ID} on line(s) {_rows(empty)}")
    ids = ids.astype(str).str.strip()
    no_label = frame[OutcomeColumn.LABEL].isna()
    if no_label.any():
        raise OutcomeError(f"empty {OutcomeColumn.LABEL} on line(s) {_rows(no_label)}")
    repeated = ids.duplicated(keep=False)
    if repeated.any():
        raise OutcomeError(
            f"{OutcomeColumn.REQUEST_ID} repeated on line(s) {_rows(repeated)}: one label per request "
            "per file (send a correction in a later file)"
        )
    return frame.assign(
        **{
            OutcomeColumn.REQUEST_ID: ids,
            OutcomeColumn.RECEIVED_AT: pd.Timestamp(received_at).tz_convert("UTC"),
        }
    )


def default_store(home: Path) -> str | None:
    from steward.dev.stack import STACK_FILE

    if os.environ.get(STORE_ENV):
        return os.environ[STORE_ENV]
    if (home / STACK_FILE).exists():
        return str((home / "monitoring").resolve())
    return None


def write_outcomes(store: str, deployment: str, frame: pd.DataFrame, received_at: datetime) -> str:
    from steward.serving.capture_writer import store_put

    uri = f"{outcomes_prefix(store, deployment)}/date={received_at:%Y-%m-%d}/{uuid.uuid4().hex}.parquet"
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store_put(store)(uri, buffer.getvalue())
    return uri


def feedback(
    name: Annotated[str, typer.Argument(help="ModelDeployment whose requests the outcomes belong to.")],
    file: Annotated[
        Path,
        typer.Option(
            "--file", "-f", help="CSV or Parquet with request_id, label and optional sensitive.<f> columns."
        ),
    ],
    namespace: Namespace = "default",
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Monitoring store (s3://bucket/prefix or a folder). Default: STEWARD_MONITORING_URI, "
            "else the local stack's <home>/monitoring.",
        ),
    ] = None,
    home: Home = DEFAULT_HOME,
) -> None:
    """Send the true outcomes (labels) of served requests, joined by monitors on the request id."""
    target = store or default_store(home)
    if target is None:
        fail(f"no monitoring store: pass --store, set {STORE_ENV}, or start the local stack (--home {home})")
    received_at = datetime.now(UTC)
    try:
        frame = validated(read_outcomes(file), received_at)
    except OutcomeError as exc:
        fail(f"{file}: {exc}")
    try:
        uri = write_outcomes(target, f"{namespace}/{name}", frame, received_at)
    except Exception as exc:  # noqa: BLE001 - boto3 and the file system raise many kinds: say which, exit 1
        fail(f"could not write the outcomes to {target}: {type(exc).__name__}: {exc}")
    console.print(f"wrote {len(frame)} outcomes for {escape(namespace)}/{escape(name)} to {escape(uri)}")

"""One version's captured rows for a window, joined with the outcomes that have arrived for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from steward.api.monitor_results import (
    CaptureColumn,
    MonitorJob,
    OutcomeColumn,
    capture_prefix,
    outcomes_prefix,
)
from steward.monitors import store

LABEL = "label"


@dataclass(frozen=True)
class WindowData:
    frame: pd.DataFrame
    rows: int
    # Rows with a joined outcome: label coverage is labelled_rows / rows.
    labelled_rows: int
    # Rows of the window refused to the caller (no prediction): left out of every figure.
    failed_rows: int = 0


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def _captured(job: MonitorJob) -> pd.DataFrame:
    keys = store.list_keys(capture_prefix(job.store_uri, job.deployment, job.version))
    end = job.window_end
    if job.monitor.window.rows is None:
        frame = store.read_frames(store.partitions_between(keys, job.window_start, end))
        return _in_window(frame, job.window_start, end)
    # A count window: the newest partitions first, until there are enough rows before the window's end.
    wanted = job.monitor.window.rows
    days = sorted({d for k in keys if (d := store.partition_date(k)) is not None}, reverse=True)
    frames: list[pd.DataFrame] = []
    have = 0
    for day in days:
        if day > end.date():
            continue
        part = _in_window(store.read_frames(k for k in keys if store.partition_date(k) == day), None, end)
        frames.append(part)
        have += len(part)
        if have >= wanted:
            break
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(CaptureColumn.TIMESTAMP, kind="stable").tail(wanted).reset_index(drop=True)


def _in_window(frame: pd.DataFrame, start: datetime | None, end: datetime) -> pd.DataFrame:
    if frame.empty:
        return frame
    if CaptureColumn.TIMESTAMP not in frame.columns:
        raise store.StoreError(f"captured rows have no {CaptureColumn.TIMESTAMP!r} column")
    stamps = _utc(frame[CaptureColumn.TIMESTAMP])
    keep = stamps < pd.Timestamp(end)
    if start is not None:
        keep &= stamps >= pd.Timestamp(start)
    return frame.loc[keep].reset_index(drop=True)


def _answered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the model answered: a refused request has no prediction to judge."""
    if CaptureColumn.STATUS in frame.columns:
        status = pd.to_numeric(frame[CaptureColumn.STATUS], errors="coerce")
        frame = frame.loc[status.between(200, 299)]
    if CaptureColumn.PREDICTION in frame.columns:
        frame = frame.loc[frame[CaptureColumn.PREDICTION].notna()]
    return frame.reset_index(drop=True)


def latest_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per request id: the label received last (a correction replaces the first answer)."""
    if outcomes.empty:
        return outcomes
    for column in (OutcomeColumn.REQUEST_ID, OutcomeColumn.LABEL):
        if column not in outcomes.columns:
            raise store.StoreError(f"outcome files have no {column!r} column")
    outcomes = outcomes.loc[outcomes[OutcomeColumn.LABEL].notna()]
    if OutcomeColumn.RECEIVED_AT in outcomes.columns:
        outcomes = outcomes.assign(**{OutcomeColumn.RECEIVED_AT: _utc(outcomes[OutcomeColumn.RECEIVED_AT])})
        outcomes = outcomes.sort_values(OutcomeColumn.RECEIVED_AT, kind="stable")
    return outcomes.drop_duplicates(OutcomeColumn.REQUEST_ID, keep="last").reset_index(drop=True)


def join_outcomes(captured: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """`captured` with a `label` column (NaN where no outcome came); sensitive features sent with the
    outcomes fill the captured ones where capture had none."""
    outcomes = latest_outcomes(outcomes)
    if outcomes.empty:
        return captured.assign(**{LABEL: pd.Series([None] * len(captured), dtype="object")})
    indexed = outcomes.set_index(OutcomeColumn.REQUEST_ID)
    ids = captured[CaptureColumn.REQUEST_ID]
    joined = captured.assign(**{LABEL: ids.map(indexed[OutcomeColumn.LABEL])})
    for column in indexed.columns:
        if column.startswith(OutcomeColumn.SENSITIVE):
            sent = ids.map(indexed[column])
            joined[column] = joined[column].combine_first(sent) if column in joined.columns else sent
    return joined


def load_window(job: MonitorJob) -> WindowData:
    captured = _captured(job)
    if captured.empty:
        return WindowData(captured, 0, 0)
    if CaptureColumn.REQUEST_ID not in captured.columns:
        raise store.StoreError(f"captured rows have no {CaptureColumn.REQUEST_ID!r} column")
    answered = _answered(captured)
    # Labels arrive days late: every outcome partition from the window's first day to now can hold one.
    # (A count window can reach back before window_start: from its earliest row, then.)
    earliest = _utc(captured[CaptureColumn.TIMESTAMP]).min().to_pydatetime()
    keys = store.list_keys(outcomes_prefix(job.store_uri, job.deployment))
    outcomes = store.read_frames(store.partitions_between(keys, min(job.window_start, earliest), None))
    frame = join_outcomes(answered, outcomes)
    return WindowData(
        frame=frame,
        rows=len(frame),
        labelled_rows=int(frame[LABEL].notna().sum()),
        failed_rows=len(captured) - len(answered),
    )


def as_text(value: object) -> object:
    """One text form for a class however it was stored: 1, 1.0 and "1" are all "1"; missing stays None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def text_series(series: pd.Series) -> pd.Series:
    return series.map(as_text).astype("object")

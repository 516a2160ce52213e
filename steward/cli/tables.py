"""Tables the CLI prints."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table

from steward.api.conditions import ConditionType
from steward.dev.store import StoredObject
from steward.operator.status import find


def _age(created: str) -> str:
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(created)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def status_table(objects: list[StoredObject]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAMESPACE", "NAME", "MODEL", "VERSION", "PHASE", "READY", "REPLICAS", "ENDPOINT", "AGE"):
        table.add_column(column)
    for obj in objects:
        ready = find(obj.status.conditions, ConditionType.READY)
        table.add_row(
            obj.namespace,
            obj.name,
            str(obj.spec.get("model", {}).get("name", "")),
            obj.status.stable.version if obj.status.stable else "",
            obj.status.phase.value,
            ready.status.value if ready else "",
            str(obj.status.ready_replicas),
            obj.status.endpoint or "",
            _age(obj.created_at),
        )
    return table

"""A readable diff of two specs, for spec-changed records (pure)."""

from __future__ import annotations

import json
from typing import Any


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def spec_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """`["serving.replicas.max: 2 -> 4", "+ model.alias: champion", "- model.version: 3"]`."""
    before, after = _flatten(old or {}), _flatten(new)
    lines = []
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            lines.append(f"- {path}: {_show(before[path])}")
        elif path not in before:
            lines.append(f"+ {path}: {_show(after[path])}")
        elif before[path] != after[path]:
            lines.append(f"{path}: {_show(before[path])} -> {_show(after[path])}")
    return lines

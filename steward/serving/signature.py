"""Name the missing and mistyped columns of a request against a model's input signature, before MLflow.

MLflow's own refusal is a sentence with a printed pandas frame of the caller's data; a client needs columns.
The check is deliberately narrower than MLflow's: it flags only what MLflow is sure to refuse too (a required
column absent; a value no conversion turns into the column's type), so it never refuses input MLflow would
score. Whatever it lets through, MLflow still checks, and its refusal becomes a generic answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow.types import ColSpec, DataType, Schema

_MISSING_ROWS = object()


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _parses(convert: Callable[[str], Any]) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        if isinstance(value, list | dict):
            return False
        if not isinstance(value, str):
            return True
        try:
            convert(value)
        except (ValueError, OverflowError):
            return False
        return True

    return accepts


def _not_nested(value: Any) -> bool:
    return not isinstance(value, list | dict)


# Per type, whether MLflow's conversion (pandas `astype` of the column, Python's int()/float() on text) can
# take a JSON value; types not listed are left to MLflow.
_ACCEPTS: dict[DataType, Callable[[Any], bool]] = {
    DataType.integer: _parses(int),
    DataType.long: _parses(int),
    DataType.float: _parses(float),
    DataType.double: _parses(float),
    DataType.boolean: _not_nested,
}


def _records(rows: list[Any]) -> dict[str, list[Any]] | None:
    if not all(isinstance(row, dict) for row in rows):
        return None
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for name, value in row.items():
            columns.setdefault(str(name), []).append(value)
    return columns


def _split(split: Any) -> dict[str, list[Any]] | None:
    if not isinstance(split, dict):
        return None
    names, rows = split.get("columns"), split.get("data")
    if not isinstance(names, list) or not isinstance(rows, list):
        return None
    if not all(isinstance(row, list) and len(row) == len(names) for row in rows):
        return None
    return {str(name): [row[i] for row in rows] for i, name in enumerate(names)}


def _columns(fmt: str, data: Any) -> dict[str, list[Any]] | None:
    """Column name -> the values sent, or None when the input has no named columns this check can read."""
    if fmt == "dataframe_split":
        return _split(data)
    if isinstance(data, list):
        return _records(data) if data and fmt in ("dataframe_records", "instances", "inputs") else None
    if isinstance(data, dict) and fmt in ("inputs", "instances"):
        return {str(k): v if isinstance(v, list) else [v] for k, v in data.items()}
    return None


def _expected(spec: ColSpec) -> str:
    return spec.type.name if isinstance(spec.type, DataType) else str(spec.type)


def column_problems(schema: Schema | None, fmt: str, data: Any) -> list[dict[str, str]]:
    """`[{"column": ..., "problem": "missing" | "expected <type>, got <json type>"}]`, in signature order."""
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return []
    columns = _columns(fmt, data)
    if columns is None:
        return []
    problems: list[dict[str, str]] = []
    for spec in schema.inputs:
        if not isinstance(spec, ColSpec) or spec.name is None:
            continue
        values = columns.get(spec.name)
        if values is None:
            if spec.required:
                problems.append({"column": spec.name, "problem": "missing"})
            continue
        accepts = _ACCEPTS.get(spec.type) if isinstance(spec.type, DataType) else None
        wrong = next((v for v in values if accepts is not None and not accepts(v)), _MISSING_ROWS)
        if wrong is not _MISSING_ROWS:
            problems.append(
                {"column": spec.name, "problem": f"expected {_expected(spec)}, got {_json_type(wrong)}"}
            )
    return problems

"""Read ModelDeployment manifests from YAML and explain what is wrong with a bad one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from steward.api.model_deployment import API_VERSION, KIND, ModelDeployment


class ManifestError(ValueError):
    """A manifest that cannot be applied; the message names the file, the field and the fix."""


# A wrong type is most often YAML's doing (`"20"`, `yes`, `2.0`): say what it made of the value.
_TYPE_ERRORS = {"int_type", "float_type", "string_type", "bool_type", "finite_number"}
_KINDS = {bool: "a boolean", int: "an integer", float: "a decimal number", str: "a string"}


def _message(e: ErrorDetails) -> str:
    where = ".".join(str(p) for p in e["loc"]) or "(document)"
    if e["type"] not in _TYPE_ERRORS:
        return f"{where}: {e['msg']}"
    value = e["input"]
    kind = _KINDS.get(type(value), type(value).__name__)
    return f"{where}: {e['msg']}, got {json.dumps(value, default=repr)} ({kind})"


def explain(error: ValidationError) -> str:
    return "; ".join(_message(e) for e in error.errors())


def parse_manifest(doc: Any, source: str) -> ModelDeployment:
    if not isinstance(doc, dict):
        raise ManifestError(
            f"{source}: expected a YAML mapping (a Kubernetes object), got {type(doc).__name__}"
        )
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise ManifestError(
            f"{source}: not a {KIND} (apiVersion {doc.get('apiVersion')!r}, kind {doc.get('kind')!r}); "
            f"expected apiVersion: {API_VERSION}, kind: {KIND}"
        )
    try:
        return ModelDeployment.model_validate({**doc, "status": {}})
    except ValidationError as exc:
        name = (doc.get("metadata") or {}).get("name", "?")
        raise ManifestError(f"{source}: ModelDeployment {name!r} is invalid: {explain(exc)}") from exc


def load_manifests(path: Path) -> list[ModelDeployment]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from exc
    if not docs:
        raise ManifestError(f"{path}: holds no YAML document")
    return [parse_manifest(doc, f"{path} (document {i + 1})") for i, doc in enumerate(docs)]

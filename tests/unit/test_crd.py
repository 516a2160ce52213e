"""The committed CRD is generated, current, and a valid structural schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from steward.api.crd import custom_resource_definition, render_crd_yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "modeldeployment.yaml"


def test_committed_crd_is_not_stale():
    assert CRD_FILE.read_text() == render_crd_yaml(), (
        "crds/modeldeployment.yaml is stale: run `uv run steward crd -o crds/modeldeployment.yaml`"
    )


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict) and ("type" in node or "properties" in node or "$ref" in node):
        out.append((path, node))
        for name, sub in (node.get("properties") or {}).items():
            out += _walk(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
    return out


def test_schema_is_structural():
    schema = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    nodes = _walk(schema)
    assert len(nodes) > 30
    for path, node in nodes:
        assert "type" in node, f"{path} has no type"
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title", "const"):
            assert forbidden not in node, f"{path} carries {forbidden}"
        if "properties" in node:
            assert "additionalProperties" not in node, f"{path}: properties and additionalProperties"
    preserved = [p for p, n in nodes if n.get("x-kubernetes-preserve-unknown-fields")]
    assert preserved == []


def test_crd_names_and_printer_columns():
    crd = custom_resource_definition()
    assert crd["metadata"]["name"] == "modeldeployments.steward.io"
    assert crd["spec"]["names"]["shortNames"] == ["md"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Model",
        "Version",
        "Phase",
        "Ready",
        "Age",
    ]


def test_crd_validates_against_the_kubernetes_schema():
    import kubernetes_validate

    kubernetes_validate.validate(yaml.safe_load(CRD_FILE.read_text()), "1.31", strict=True)


def test_steward_crd_command_prints_the_file():
    done = subprocess.run(
        [sys.executable, "-m", "steward.cli.main", "crd"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout == CRD_FILE.read_text()

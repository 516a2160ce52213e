"""`steward dev apply` says created / configured / unchanged, and `steward get md NAME -o json|yaml` gives the
object itself (a List without NAME), as kubectl does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from steward.api.model_deployment import ModelDeployment
from steward.cli.main import app
from steward.dev.store import LocalStore

runner = CliRunner()
MANIFEST = """
apiVersion: steward.io/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}, namespace: lending}}
spec:
  model: {{name: credit-risk, version: "{version}"}}
"""


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False, env={"STEWARD_ACTOR": "carol"})


def test_apply_says_created_then_unchanged_then_configured(tmp_path: Path) -> None:
    file = tmp_path / "m.yaml"
    file.write_text(MANIFEST.format(name="scorer", version="1"))
    home = str(tmp_path / "home")
    outputs = []
    for version, reason in (("1", "CR-1"), ("1", "CR-1"), ("2", "CR-1"), ("2", "CR-2")):
        file.write_text(MANIFEST.format(name="scorer", version=version))
        result = cli("dev", "apply", "-f", str(file), "--reason", reason, "--home", home)
        assert result.exit_code == 0, result.output
        outputs.append(result.output.strip())
    assert outputs == [
        "modeldeployment.steward.io/scorer created",
        "modeldeployment.steward.io/scorer unchanged",
        "modeldeployment.steward.io/scorer configured",  # a new spec
        "modeldeployment.steward.io/scorer configured",  # a new reason: the who-and-why changed
    ]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    store = LocalStore(tmp_path)
    for name in ("scorer", "ranker"):
        md = ModelDeployment.model_validate(yaml.safe_load(MANIFEST.format(name=name, version="1")))
        store.apply(md)
        store.admit(md, datetime(2026, 11, 23, tzinfo=UTC))
    return tmp_path


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_get_one_is_the_object_and_get_all_is_a_list(home: Path, output: str) -> None:
    def parse(text: str) -> Any:
        return json.loads(text) if output == "json" else yaml.safe_load(text)

    one = cli("get", "md", "scorer", "-n", "lending", "--home", str(home), "-o", output)
    assert one.exit_code == 0, one.output
    doc = parse(one.output)
    assert doc["kind"] == "ModelDeployment" and doc["metadata"]["name"] == "scorer"
    every = cli("get", "md", "--home", str(home), "-o", output)
    listed = parse(every.output)
    assert listed["kind"] == "List"
    assert sorted(item["metadata"]["name"] for item in listed["items"]) == ["ranker", "scorer"]

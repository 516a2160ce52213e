"""The spec rejects bad manifests with messages that name the field, in pydantic and in CEL alike."""

from __future__ import annotations

from pathlib import Path

import cel
import pytest
from pydantic import ValidationError

from steward.api.crd import custom_resource_definition
from steward.api.manifests import ManifestError, load_manifests
from steward.api.model_deployment import ModelDeploymentSpec, ModelRef, Replicas, memory_bytes

ROOT = Path(__file__).resolve().parents[2]


def _rules(*path: str) -> list[str]:
    node = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for key in path:
        node = node["properties"][key]
    return [r["rule"] for r in node["x-kubernetes-validations"]]


@pytest.mark.parametrize(
    ("model", "ok"),
    [
        ({"name": "m", "version": "1"}, True),
        ({"name": "m", "alias": "champion"}, True),
        ({"name": "m"}, False),
        ({"name": "m", "version": "1", "alias": "champion"}, False),
    ],
)
def test_exactly_one_of_version_or_alias_in_pydantic_and_cel(model, ok):
    (rule,) = _rules("spec", "model")
    assert cel.evaluate(rule, {"self": model}) is ok
    if ok:
        ModelRef.model_validate(model)
    else:
        with pytest.raises(ValidationError, match=r"exactly one of model\.version or model\.alias"):
            ModelRef.model_validate(model)


@pytest.mark.parametrize(("lo", "hi", "ok"), [(0, 1, True), (2, 2, True), (3, 2, False)])
def test_min_not_above_max_in_pydantic_and_cel(lo, hi, ok):
    (rule,) = _rules("spec", "serving", "replicas")
    assert cel.evaluate(rule, {"self": {"min": lo, "max": hi}}) is ok
    if ok:
        Replicas(min=lo, max=hi)
    else:
        with pytest.raises(ValidationError, match=r"replicas.min \(3\) must be <= replicas.max \(2\)"):
            Replicas(min=lo, max=hi)


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({"resources": {"gpu": -1}}, "gpu"),
        ({"resources": {"memory": "lots"}}, "memory"),
        ({"targetOngoingRequests": 0}, "targetOngoingRequests"),
        ({"routePrefix": "no-slash"}, "routePrefix"),
        ({"rayAddress": "ray-head:8265"}, "rayAddress"),
        ({"replicas": {"max": 0}}, "max"),
        ({"replicaz": 3}, "replicaz"),
    ],
)
def test_bad_serving_fields_are_named(serving, field):
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate({"model": {"name": "m", "version": "1"}, "serving": serving})
    assert field in str(info.value)


MANIFEST = """apiVersion: steward.io/v1alpha1
kind: ModelDeployment
metadata: {name: x}
spec:
  model: {name: m, version: '1'}
"""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "  rollout: {analysis: {minRequests: '20'}}\n",
            'rollout.analysis.minRequests: Input should be a valid integer, got "20" (a string)',
        ),
        (
            "  serving: {resources: {cpu: '1'}}\n",
            'serving.resources.cpu: Input should be a valid number, got "1" (a string)',
        ),
        (
            "  rollout: {steps: [{setWeight: '10'}]}\n",
            'rollout.steps.0.setWeight: Input should be a valid integer, got "10" (a string)',
        ),
        (
            "  serving: {maxOngoingRequests: true}\n",
            "serving.maxOngoingRequests: Input should be a valid integer, got true (a boolean)",
        ),
        (
            "  serving: {replicas: {max: 2.0}}\n",
            "serving.replicas.max: Input should be a valid integer, got 2.0 (a decimal number)",
        ),
        (
            "  serving: {resources: {gpu: .inf}}\n",
            "serving.resources.gpu: Input should be a finite number",
        ),
    ],
)
def test_values_the_api_server_refuses_are_refused_with_the_field_named(tmp_path, spec, message):
    """Lax pydantic took all of these (as 20, 1.0, 10, 1 and 2); `kubectl apply` refuses them."""
    path = tmp_path / "md.yaml"
    path.write_text(MANIFEST + spec)
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    assert message in str(info.value)


def test_null_means_the_default_as_on_the_api_server():
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"name": "m", "version": "1"}, "serving": {"resources": {"cpu": None, "memory": None}}}
    )
    assert spec.serving.resources.cpu == 1.0
    with pytest.raises(ValidationError, match="replicaz"):
        ModelDeploymentSpec.model_validate(
            {"model": {"name": "m", "version": "1"}, "serving": {"replicaz": None}}
        )


def test_memory_quantities():
    assert memory_bytes("512Mi") == 512 * 2**20
    assert memory_bytes("2G") == 2 * 10**9
    assert memory_bytes("1.5Gi") == int(1.5 * 2**30)
    with pytest.raises(ValueError, match="512Mi"):
        memory_bytes("12 parsecs")


def test_example_manifest_is_valid():
    (md,) = load_manifests(ROOT / "examples" / "credit-risk.yaml")
    assert md.spec.model.alias == "champion"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [", "not valid YAML"),
        ("", "holds no YAML document"),
        ("- a\n- b\n", "expected a YAML mapping"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "not a ModelDeployment"),
        (
            "apiVersion: steward.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\n"
            "spec: {model: {name: m}}\n",
            "exactly one of model.version or model.alias",
        ),
        (
            "apiVersion: steward.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: Bad_Name}\n"
            "spec: {model: {name: m, version: '1'}}\n",
            "metadata.name",
        ),
    ],
)
def test_bad_manifests_get_clear_errors(tmp_path, text, message):
    path = tmp_path / "md.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message) as info:
        load_manifests(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifests(tmp_path / "nope.yaml")

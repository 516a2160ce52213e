"""pydantic and the API server agree on every spec: what `steward dev apply` accepts, `kubectl apply` accepts.

The API server's verdict is modelled from the generated CRD as Kubernetes applies it: nulls pruned from
objects, defaults filled in, the OpenAPI v3 schema checked (jsonschema draft 4, which like OpenAPI 3.0 and
Kubernetes holds 2.0 to be no integer and takes a boolean `exclusiveMinimum`), unknown fields refused
(kubectl's strict field validation), then every `x-kubernetes-validations` CEL rule evaluated on the
defaulted object with a real CEL implementation. Specs are generated from the schema itself, mostly
valid with a few wrong values (numbers as strings, booleans, whole floats for integers, out of range,
null, unknown fields), so a new field is covered without touching this file.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import cel
import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from steward.api.crd import custom_resource_definition
from steward.api.manifests import parse_manifest
from steward.api.model_deployment import ModelDeploymentSpec

ROOT_SCHEMA = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC_SCHEMA = ROOT_SCHEMA["properties"]["spec"]
INT64 = 2**63 - 1
UNKNOWN = "notAField"


def _sub(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema of field `key` of an object: a property, a map's value, or None (an unknown field)."""
    if key in schema.get("properties", {}):
        return schema["properties"][key]  # type: ignore[no-any-return]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for sub in node.get("properties", {}).values():
        found += _walk(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _walk(node[key])
    return found


# ----------------------------------------------------------------------------- the API server's verdict


def _go_pattern(pattern: str, value: str) -> bool:
    # Go's RE2 `$` is the end of the text; Python's also matches before a final newline.
    return re.search(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern, value) is not None


def _validator() -> jsonschema.Draft4Validator:
    def pattern(validator: Any, regex: str, instance: Any, schema: Any) -> Any:
        if isinstance(instance, str) and not _go_pattern(regex, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {regex!r}")

    def strict_fields(node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if "properties" in node:
            out["properties"] = {k: strict_fields(v) for k, v in node["properties"].items()}
            out.setdefault("additionalProperties", False)
        if "items" in node:
            out["items"] = strict_fields(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = strict_fields(node["additionalProperties"])
        return out

    def is_integer(checker: Any, instance: Any) -> bool:
        # The API server decodes an integer beyond int64 as a float.
        return (
            isinstance(instance, int) and not isinstance(instance, bool) and -INT64 - 1 <= instance <= INT64
        )

    types = jsonschema.Draft4Validator.TYPE_CHECKER.redefine("integer", is_integer)
    cls = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": pattern}, type_checker=types)
    return cls(strict_fields(SPEC_SCHEMA))


VALIDATOR = _validator()


def _prune_nulls(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server does to a null in an object: a field that is not `nullable` loses it."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = {}
        for k, v in value.items():
            sub = _sub(schema, k)
            if sub is None:
                out[k] = v
            elif v is not None:
                out[k] = _prune_nulls(v, sub)
        return out
    if isinstance(value, list) and "items" in schema:
        return [_prune_nulls(v, schema["items"]) for v in value]
    return value


def _default(value: Any, schema: dict[str, Any]) -> Any:
    """apiextensions' structural defaulting: absent fields get their default, then every field recurses."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = dict(value)
        for key, sub in schema.get("properties", {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        return {k: v if (sub := _sub(schema, k)) is None else _default(v, sub) for k, v in out.items()}
    if isinstance(value, list) and "items" in schema:
        return [_default(v, schema["items"]) for v in value]
    return value


def _cel_failures(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    failures = [
        f"{where}: {rule['message']}"
        for rule in schema.get("x-kubernetes-validations", [])
        if cel.evaluate(rule["rule"], {"self": value}) is not True
    ]
    if isinstance(value, dict):
        for key, item in value.items():
            if (sub := _sub(schema, key)) is not None:
                failures += _cel_failures(item, sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            failures += _cel_failures(item, schema["items"], f"{where}[{i}]")
    return failures


def _finite(x: float) -> float:
    if math.isinf(x):
        raise ValueError("number out of range")
    return x


def api_server_verdict(spec: Any) -> tuple[bool, str, Any]:
    """(accepted, why not, the stored spec) as `kubectl apply` of a manifest with this spec would have it."""
    try:
        # inf and NaN: YAML has them, JSON (what kubectl sends) does not; a float64 holds no 10**400.
        json.loads(json.dumps(spec, allow_nan=False), parse_int=lambda s: _finite(float(s)))
    except ValueError as exc:
        return False, f"does not decode: {exc}", None
    stored = _default(_prune_nulls(spec, SPEC_SCHEMA), SPEC_SCHEMA)
    errors = sorted(VALIDATOR.iter_errors(stored), key=lambda e: list(e.absolute_path))
    if errors:
        return False, "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors), None
    failures = _cel_failures(stored, SPEC_SCHEMA, "spec")
    return not failures, "; ".join(failures), stored


def pydantic_verdict(spec: Any) -> tuple[bool, str, ModelDeploymentSpec | None]:
    try:
        return True, "", ModelDeploymentSpec.model_validate(spec)
    except ValidationError as exc:
        return False, str(exc), None


# ------------------------------------------------------------------------------------------ spec generation


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One value in sixteen is a wrong one, so that many specs are valid and the rest wrong in one place."""
    return st.integers(0, 15).flatmap(lambda i: bad if i == 0 else good)


def _bounds(schema: dict[str, Any]) -> tuple[float, float]:
    lo = schema.get("minimum", -1000)
    hi = schema.get("maximum", lo + 10_000)
    return lo, hi


def _wrong_scalars(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """What YAML makes of a careless manifest: quoted numbers, booleans, null, a list or a map."""
    return st.one_of(
        value.map(str),
        st.booleans(),
        st.none(),
        st.just([]),
        st.just({}),
        st.sampled_from(["", "yes", "1e3", "0x10"]),
    )


def _integer(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    lo, hi = _bounds(schema)
    good = st.integers(int(lo), int(hi))
    bad = st.one_of(
        st.integers(int(lo) - 3, int(hi) + 3),
        good.map(float),  # 2.0: a number, not an integer, to the API server
        st.floats(lo, hi, allow_nan=False),
        st.sampled_from([-INT64 - 1, INT64, INT64 + 1, 2**70, 10**400]),
        _wrong_scalars(good),
    )
    return _mostly(good, bad)


def _number(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    lo, hi = _bounds(schema)
    good = st.one_of(st.integers(math.ceil(lo), math.floor(hi)), st.floats(lo, hi, allow_nan=False))
    bad = st.one_of(
        st.floats(lo - 5, hi + 5, allow_nan=False),
        st.sampled_from([math.inf, -math.inf, math.nan, lo, hi]),
        _wrong_scalars(good),
    )
    return _mostly(good, bad)


def _string(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        good: st.SearchStrategy[Any] = st.sampled_from(schema["enum"])
    elif "pattern" in schema:
        # Python's `$` lets a final newline through; the generated text must fit Go's pattern too.
        good = st.from_regex(schema["pattern"].removesuffix("$") + r"\Z").filter(
            lambda s: len(s) <= schema.get("maxLength", 10**6)
        )
    else:
        good = st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 20))
    bad = st.one_of(
        st.text(max_size=8),
        st.integers(-3, 300),  # `version: 3` without quotes
        st.floats(0, 10, allow_nan=False),
        st.booleans(),
        st.none(),
        st.sampled_from(["3\n", "30s\n", " 30s", "2Gi "]),
    )
    return _mostly(good, bad)


def _boolean(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    bad = st.sampled_from(["true", "false", "yes", "on", 0, 1, 1.0, None, []])
    return _mostly(st.booleans(), bad)


def _object(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "properties" not in schema:
        # A map. Whether the API server prunes a null map value as it does a null field is not modelled.
        values = _value(schema["additionalProperties"]).filter(lambda v: v is not None)
        good_map = st.dictionaries(st.text(max_size=6), values, max_size=3)
        return _mostly(good_map, st.one_of(st.text(max_size=3), st.integers(0, 3), st.just([{}])))
    fields = {k: _value(v) for k, v in schema["properties"].items()}
    required = {k: v for k, v in fields.items() if k in schema.get("required", ())}
    optional = {k: v for k, v in fields.items() if k not in required}
    good = st.fixed_dictionaries(required, optional=optional)
    bad = st.one_of(
        st.fixed_dictionaries({UNKNOWN: st.integers(0, 3) | st.none()}, optional=fields),
        st.fixed_dictionaries({}, optional=fields),  # perhaps without a required field
        st.text(max_size=3),
        st.integers(0, 3),
        st.just([{}]),
    )
    return _mostly(good, bad)


def _array(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    good = st.lists(_value(schema["items"]), max_size=4)
    return _mostly(good, st.one_of(st.just({}), st.text(max_size=3), st.none(), st.just([None])))


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema["type"]
    if kind == "object":
        return st.deferred(lambda: _object(schema))
    if kind == "array":
        return st.deferred(lambda: _array(schema))
    return {"integer": _integer, "number": _number, "string": _string, "boolean": _boolean}[kind](schema)


def _spec() -> st.SearchStrategy[Any]:
    pinned = st.fixed_dictionaries({"name": st.just("m")}, optional={"version": st.just("3")})
    # Most specs name a model properly so that the rest of them is what decides.
    model = _mostly(pinned, _value(SPEC_SCHEMA["properties"]["model"]))
    rest = {k: _value(v) for k, v in SPEC_SCHEMA["properties"].items() if k != "model"}
    return st.fixed_dictionaries({"model": model}, optional=rest)


def _paths(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every object in the spec, as a path ("[]" for a list item, "{}" for a map value)."""
    found = [path] if schema.get("type") == "object" else []
    for key, sub in schema.get("properties", {}).items():
        found += _paths(sub, (*path, key))
    if "items" in schema:
        found += _paths(schema["items"], (*path, "[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        found += _paths(schema["additionalProperties"], (*path, "{}"))
    return found


def _focused(schema: dict[str, Any], path: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """A spec that holds the object at `path` (generated as `_value` does) and, around it, only what its
    ancestors require: the deep parts of the spec get as many examples as the shallow ones."""
    if not path:
        return _value(schema)
    key, rest = path[0], path[1:]
    if key == "[]":
        return st.lists(_focused(schema["items"], rest), min_size=1, max_size=1)
    if key == "{}":
        return st.dictionaries(st.just("k"), _focused(schema["additionalProperties"], rest), min_size=1)
    required = {k: _value(schema["properties"][k]) for k in schema.get("required", ()) if k != key}
    return st.fixed_dictionaries({**required, key: _focused(schema["properties"][key], rest)})


PATHS = _paths(SPEC_SCHEMA)[1:]

# ---------------------------------------------------------------------------------------------------- tests


def test_the_model_of_the_api_server_knows_every_keyword_the_crd_uses():
    """A keyword this test does not model (`nullable`, `format`, a list type...) must be modelled first."""
    modelled = {
        "type", "properties", "required", "items", "description", "default", "enum", "pattern",
        "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength", "minItems", "maxItems",
        "maxProperties",
        "additionalProperties", "x-kubernetes-validations",
    }  # fmt: skip
    used = {key for node in _walk(SPEC_SCHEMA) for key in node}
    assert used <= modelled, f"not modelled by this test: {used - modelled}"
    patterns = [node["pattern"] for node in _walk(SPEC_SCHEMA) if "pattern" in node]
    # Go's RE2 (API server), Rust's regex (pydantic) and Python's re (this test) read these differently.
    assert not [p for p in patterns if re.search(r"\\[sSdDwWbB]", p)], "spell character classes out"
    rules = [r["rule"] for node in _walk(SPEC_SCHEMA) for r in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 5  # every rule is evaluated by a real CEL implementation, none by a hand mapping


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@SETTINGS
@given(_spec())
def test_pydantic_accepts_exactly_what_the_api_server_accepts(spec):
    _agree(spec)


@SETTINGS
@given(st.sampled_from(PATHS).flatmap(lambda path: _focused(SPEC_SCHEMA, path)))
def test_they_agree_deep_in_the_spec_too(spec):
    _agree(spec)


def _agree(spec: Any) -> None:
    server_ok, server_why, stored = api_server_verdict(spec)
    ours_ok, ours_why, parsed = pydantic_verdict(spec)
    event("accepted" if server_ok else "rejected")
    assert ours_ok == server_ok, (
        f"pydantic {'accepts' if ours_ok else 'rejects'}, the API server "
        f"{'accepts' if server_ok else 'rejects'}: {ours_why or server_why}"
    )
    if parsed is not None:
        # Defaults agree too: the operator reads from the cluster what the local loop makes of the file.
        assert parsed.model_dump(by_alias=True, mode="json", exclude_none=True) == stored


SPEC = {"model": {"name": "m", "version": "3"}}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"rollout": {"analysis": {"minRequests": "20"}}}, "minRequests"),
        ({"serving": {"resources": {"cpu": "1"}}}, "cpu"),
        ({"rollout": {"steps": [{"setWeight": "10"}]}}, "setWeight"),
        ({"serving": {"maxOngoingRequests": True}}, "maxOngoingRequests"),
        ({"serving": {"replicas": {"max": 2.0}}}, "max"),
        ({"model": {"name": "m", "version": 3}}, "version"),
        ({"rollout": {"analysis": {"interval": 30}}}, "interval"),
        ({"serving": {"resources": {"gpu": math.inf}}}, "gpu"),
        ({"rollout": {"analysis": {"minRequests": 2**64}}}, "minRequests"),
        (
            {
                "monitoring": {
                    "monitors": [{"name": "a", "kind": "drift", "drift": {"includePredictions": "true"}}]
                }
            },
            "includePredictions",
        ),
        # A candidate's alias must not be the followed one: traffic would follow it before its canary.
        (
            {"model": {"name": "m", "alias": "challenger"}, "retraining": {"entrypoint": "x"}},
            "challengerAlias",
        ),
        (
            {
                "model": {"name": "m", "alias": "champion"},
                "retraining": {"entrypoint": "x", "challengerAlias": "champion"},
            },
            "challengerAlias",
        ),
    ],
)
def test_the_issue_examples_are_refused_by_both(patch, field):
    spec = {**SPEC, **patch}
    assert api_server_verdict(spec)[0] is False
    ok, why, _ = pydantic_verdict(spec)
    assert ok is False and field in why


@pytest.mark.parametrize(
    "patch",
    [
        {"serving": {"resources": {"cpu": 1, "gpu": 0, "memory": None}}},
        {"serving": {"targetOngoingRequests": 3, "replicas": {"min": 0, "max": 2}}},
        {"rollout": {"analysis": {"maxErrorRate": 0, "maxLatencyP95Ratio": 2}}},
        {"rollout": None, "serving": None},
        {"rollout": {"analysis": {"maxLatencyP95Ms": 2**64}}},  # a float to the API server, and a number
    ],
)
def test_whole_numbers_for_numbers_and_null_for_defaults_pass_both(patch):
    spec = {**SPEC, **patch}
    server_ok, why, stored = api_server_verdict(spec)
    assert server_ok, why
    ok, why, parsed = pydantic_verdict(spec)
    assert ok, why
    assert parsed is not None and parsed.model_dump(by_alias=True, mode="json", exclude_none=True) == stored


@pytest.mark.parametrize(("value", "ok"), [("3", True), ("3\n", False), ("03", False)])
def test_the_oracle_matches_patterns_as_go_does(value, ok):
    assert api_server_verdict({"model": {"name": "m", "version": value}})[0] is ok


ROOT = Path(__file__).resolve().parents[2]


def _shipped_manifests() -> list[tuple[str, Any]]:
    """The examples (the demo applies examples/credit-risk.yaml) and the manifests in the README."""
    found = [
        (str(p.relative_to(ROOT)), doc)
        for p in sorted(ROOT.glob("examples/*.yaml"))
        for doc in yaml.safe_load_all(p.read_text())
    ]
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    found += [("README.md", yaml.safe_load(b)) for b in blocks if "kind: ModelDeployment" in b]
    return [(where, doc) for where, doc in found if doc and doc.get("kind") == "ModelDeployment"]


@pytest.mark.parametrize(("where", "doc"), _shipped_manifests())
def test_shipped_manifests_pass_both(where, doc):
    server_ok, why, _ = api_server_verdict(doc["spec"])
    assert server_ok, f"{where}: {why}"
    parse_manifest(doc, where)


def test_the_readme_and_the_examples_hold_manifests():
    assert {where for where, _ in _shipped_manifests()} >= {"README.md", "examples/credit-risk.yaml"}

"""Property-based: no request payload makes the serving code raise, or answer 5xx for the caller's mistake.

The replica's request path without Ray: the body read under a limit, JSON parsing, the signature check and
MLflow's own parsing and enforcement, against a model that never fails by itself (so any 5xx would be ours).
"""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.models import infer_signature
from mlflow.pyfunc.scoring_server import infer_and_parse_data

from steward.serving.scoring import Answer, parse_json_body, read_body, score
from steward.serving.signature import column_problems

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COLUMNS = ["income", "age", "name"]
FORMATS = ("dataframe_records", "dataframe_split", "inputs", "instances")


class Zeros(mlflow.pyfunc.PythonModel):
    """Answers 0 for every row: whatever fails is the input's handling, never the model."""

    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input), dtype=int)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model"
    example = pd.DataFrame({"income": [1.0, 2.5], "age": [30, 41], "name": ["a", "b"]})
    mlflow.pyfunc.save_model(
        path, python_model=Zeros(), signature=infer_signature(example, pd.Series([0, 1]))
    )
    return mlflow.pyfunc.load_model(str(path))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["1", "2.5", " 3 ", "nan", "inf", "1e5", "x"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
names = st.sampled_from([*COLUMNS, "other", ""])
# Rows that mostly fit the signature, so that scoring runs too, with a value of any kind now and then.
fitting_rows = st.fixed_dictionaries(
    {
        "income": st.floats(-1e6, 1e6) | st.integers(-1000, 1000) | json_values,
        "age": st.integers(0, 120) | st.sampled_from(["42", 41.0, True]) | json_values,
        "name": st.text(max_size=5) | json_values,
    },
)
records = st.lists(fitting_rows | st.dictionaries(names, json_values, max_size=4), min_size=1, max_size=3)
split = st.fixed_dictionaries(
    {"columns": st.lists(names, max_size=4), "data": st.lists(st.lists(json_values, max_size=4), max_size=3)}
)
columnar = st.dictionaries(names, st.lists(json_values, max_size=3) | json_values, max_size=4)
payloads = st.one_of(
    st.builds(lambda r: {"dataframe_records": r}, st.lists(fitting_rows, min_size=1, max_size=3)),
    st.builds(lambda r: {"dataframe_records": r}, records | json_values),
    st.builds(lambda s: {"dataframe_split": s}, split | json_values),
    st.builds(lambda c: {"inputs": c}, columnar | records | json_values),
    st.builds(lambda c: {"instances": c}, columnar | records | json_values),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)


def _is_client_error(answer: Answer) -> bool:
    error = answer.body.get("error")
    return 400 <= answer.status < 500 and isinstance(error, dict) and bool(error.get("code"))


@SETTINGS
@given(payload=payloads)
def test_no_payload_crashes_scoring_or_gets_a_5xx(model, payload):
    answer = score(model, payload, "req-1")
    assert answer.status == 200 or _is_client_error(answer), answer
    json.dumps(answer.body, allow_nan=False)  # the answer itself can always be sent


def _holds_an_empty_list(value: object) -> bool:
    if isinstance(value, list):
        return not value or any(_holds_an_empty_list(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_an_empty_list(v) for v in value.values())
    return False


@SETTINGS
@given(payload=payloads)
def test_the_signature_check_refuses_nothing_mlflow_would_score(model, payload):
    """Its details name columns; they must never turn away input the model would have scored."""
    if len(payload) != 1 or (fmt := next(iter(payload))) not in FORMATS:
        return
    schema = model.metadata.get_input_schema()
    if not column_problems(schema, fmt, payload[fmt]):
        return
    if _holds_an_empty_list(payload[fmt]):
        # Refused on purpose: MLflow's enforcement lets an empty array through where the signature names a
        # scalar column (a non-empty one it refuses), and a model would get an array for a number.
        return
    with pytest.raises(Exception):  # noqa: B017 - any refusal by MLflow, at parsing or enforcement
        model.predict(infer_and_parse_data(payload, schema))


@SETTINGS
@given(raw=st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_no_body_crashes_parsing(raw):
    parsed = parse_json_body(raw)
    assert isinstance(parsed, dict) or _is_client_error(parsed)


def test_deep_nesting_is_a_client_error():
    parsed = parse_json_body(b"[" * 100_000 + b"]" * 100_000)
    assert not isinstance(parsed, dict) and _is_client_error(parsed)


@SETTINGS
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=8),
    limit=st.integers(min_value=0, max_value=120),
    declared=st.none() | st.integers(min_value=0, max_value=200).map(str) | st.sampled_from(["", "x", "-1"]),
)
async def test_the_body_is_refused_exactly_when_it_crosses_the_limit(chunks, limit, declared):
    pulled: list[bytes] = []

    async def stream():
        for chunk in chunks:
            pulled.append(chunk)
            yield chunk

    result = await read_body(stream(), declared, limit)
    total = sum(map(len, chunks))
    too_large = total > limit or (declared is not None and declared.isdigit() and int(declared) > limit)
    assert isinstance(result, Answer) == too_large
    if isinstance(result, Answer):
        assert result.status == 413
    else:
        assert result == b"".join(chunks)
    # Never more than one chunk past the limit is read.
    assert sum(map(len, pulled[:-1])) <= limit or not pulled

"""Scoring answers: MLflow's formats accepted, every bad input a 4xx with a code, model bugs a 500."""

from __future__ import annotations

import json

import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow.models import infer_signature

from steward.serving.scoring import ErrorCode, parse_json_body, read_body, score

COLUMNS = ["income", "debt_ratio"]


class Threshold(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["income"] < 0).any():
            raise ZeroDivisionError("negative income")
        return (model_input["debt_ratio"] > 0.5).astype(int).to_numpy()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model"
    example = pd.DataFrame({"income": [1.0, 2.0], "debt_ratio": [0.1, 0.9]})
    mlflow.pyfunc.save_model(
        path, python_model=Threshold(), signature=infer_signature(example, pd.Series([0, 1]))
    )
    return mlflow.pyfunc.load_model(str(path))


ROWS = [{"income": 10.0, "debt_ratio": 0.9}, {"income": 20.0, "debt_ratio": 0.2}]


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_records": ROWS},
        {"dataframe_split": {"columns": COLUMNS, "data": [[10.0, 0.9], [20.0, 0.2]]}},
        {"instances": ROWS},
        {"inputs": {"income": [10.0, 20.0], "debt_ratio": [0.9, 0.2]}},
    ],
    ids=["dataframe_records", "dataframe_split", "instances", "inputs"],
)
def test_every_mlflow_format_scores(model, payload):
    answer = score(model, payload)
    assert answer.status == 200, answer.body
    assert answer.body["predictions"] == [1, 0]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"dataframe_records": [{"income": 1.0}]}, 422, ErrorCode.INVALID_INPUT),
        ({"dataframe_records": [{"income": "rich", "debt_ratio": 0.1}]}, 422, ErrorCode.INVALID_INPUT),
        ({"rows": ROWS}, 400, ErrorCode.UNSUPPORTED_FORMAT),
        ({"dataframe_records": ROWS, "instances": ROWS}, 400, ErrorCode.UNSUPPORTED_FORMAT),
        ({"dataframe_records": [{"income": -1.0, "debt_ratio": 0.1}]}, 500, ErrorCode.MODEL_ERROR),
    ],
    ids=["missing column", "wrong type", "unknown format", "two formats", "model raises"],
)
def test_bad_requests_get_a_code(model, payload, status, code):
    answer = score(model, payload)
    assert answer.status == status
    assert answer.body["error"]["code"] == code.value
    assert answer.body["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        ({"dataframe_records": [{"income": 1.0}]}, [{"column": "debt_ratio", "problem": "missing"}]),
        ({"dataframe_records": [{}]}, [{"column": c, "problem": "missing"} for c in COLUMNS]),
        (
            {"dataframe_records": [{"income": "rich"}]},
            [
                {"column": "income", "problem": "expected double, got string"},
                {"column": "debt_ratio", "problem": "missing"},
            ],
        ),
        (
            {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, [0.5]]]}},
            [{"column": "debt_ratio", "problem": "expected double, got array"}],
        ),
        (
            {"inputs": {"income": [1.0], "debt_ratio": {"a": 1}}},
            [{"column": "debt_ratio", "problem": "expected double, got object"}],
        ),
        ({"instances": [{"debt_ratio": 0.5}]}, [{"column": "income", "problem": "missing"}]),
    ],
    ids=["one missing", "all missing", "mistyped and missing", "split", "inputs", "instances"],
)
def test_missing_and_mistyped_columns_are_named(model, payload, details):
    answer = score(model, payload)
    assert (answer.status, answer.body["error"]["code"]) == (422, "INVALID_INPUT")
    assert answer.body["error"]["details"] == details


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_records": [{"income": 1.0}]},
        {"dataframe_records": [{"income": 1.0, "debt_ratio": 0.1}, {"income": "x"}]},
        {"dataframe_records": 5},
        {"dataframe_split": {"columns": ["income"], "data": [[1.0, 2.0]]}},
        {"instances": [1, 2, 3]},
        {"dataframe_records": [{"income": -1.0, "debt_ratio": 0.1}]},
    ],
    ids=["missing", "mistyped", "not records", "ragged split", "tensor for columns", "model raises"],
)
def test_answers_carry_no_exception_text(model, payload):
    """MLflow's messages print the caller's frame ("   income  ...") and its internals; pandas' name types."""
    text = json.dumps(score(model, payload).body)
    for leak in (
        "Failed to enforce",
        "Error:",
        "dtype",
        "Traceback",
        "<class",
        "negative income",
        "  income",
    ):
        assert leak not in text


def test_extra_columns_such_as_sensitive_attributes_are_ignored(model):
    rows = [{**r, "gender": "female"} for r in ROWS]
    assert score(model, {"dataframe_records": rows}).body["predictions"] == [1, 0]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"dataframe_records": [', ErrorCode.MALFORMED_JSON),
        (b"\xff\xfe", ErrorCode.MALFORMED_JSON),
        (b"[1, 2]", ErrorCode.UNSUPPORTED_FORMAT),
        (b" " * (10 * 2**20 + 1), ErrorCode.PAYLOAD_TOO_LARGE),
    ],
)
def test_body_parsing_errors(raw, code):
    answer = parse_json_body(raw)
    assert not isinstance(answer, dict)
    assert answer.body["error"]["code"] == code.value
    json.dumps(answer.body)  # always serialisable


def test_malformed_json_is_located_not_quoted():
    answer = parse_json_body(b'{"dataframe_records": [1,,]}')
    assert not isinstance(answer, dict)
    assert answer.body["error"]["details"] == {"line": 1, "column": 26}
    assert "Expecting" not in json.dumps(answer.body)


async def _chunks(pieces, pulled):
    for piece in pieces:
        pulled.append(len(piece))
        yield piece


@pytest.mark.parametrize(
    ("pieces", "content_length", "limit", "outcome", "pulled"),
    [
        ([b"ab", b"cd"], None, 4, b"abcd", 2),
        ([b"ab", b"cd", b"e", b"f"], None, 4, 413, 3),
        ([b"abcdef"], None, 4, 413, 1),
        ([b"ab"], "5", 4, 413, 0),
        ([b"ab"], "2", 4, b"ab", 1),
        # A declared length that lies low does not get a large body through.
        ([b"abc", b"def"], "1", 4, 413, 2),
        # An unreadable length is the ASGI server's to refuse; the count still holds.
        ([b"abc"], "x", 4, b"abc", 1),
    ],
)
async def test_read_body_stops_at_the_limit(pieces, content_length, limit, outcome, pulled):
    seen: list[int] = []
    result = await read_body(_chunks(pieces, seen), content_length, limit)
    if isinstance(outcome, bytes):
        assert result == outcome
    else:
        assert not isinstance(result, bytes)
        assert (result.status, result.body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert len(seen) == pulled


def test_class_probabilities_only_when_asked_and_where_the_model_gives_them(model, tmp_path):
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    from steward.serving.capture import PROBA_FIELD

    frame = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0], "debt_ratio": [0.1, 0.9, 0.2, 0.8]})
    labels = pd.Series(["repaid", "defaulted", "repaid", "defaulted"])
    classifier = LogisticRegression().fit(frame, labels)
    mlflow.sklearn.save_model(
        classifier, tmp_path / "sk", signature=infer_signature(frame, classifier.predict(frame))
    )
    sklearn_model = mlflow.pyfunc.load_model(str(tmp_path / "sk"))

    answer = score(sklearn_model, {"dataframe_records": ROWS}, with_proba=True)
    assert answer.status == 200
    expected = classifier.predict_proba(pd.DataFrame(ROWS))
    assert answer.body[PROBA_FIELD] == [
        {"defaulted": pytest.approx(row[0]), "repaid": pytest.approx(row[1])} for row in expected
    ]
    assert PROBA_FIELD not in score(sklearn_model, {"dataframe_records": ROWS}).body
    # A custom python model has no predict_proba: the answer is the same, with no probabilities.
    plain = score(model, {"dataframe_records": ROWS}, with_proba=True)
    assert plain.status == 200 and PROBA_FIELD not in plain.body

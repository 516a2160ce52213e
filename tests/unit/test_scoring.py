"""Scoring answers: MLflow's formats accepted, every bad input a 4xx with a code, model bugs a 500."""

from __future__ import annotations

import json

import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow.models import infer_signature

from steward.serving.scoring import ErrorCode, parse_json_body, score

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


def test_missing_column_names_the_column(model):
    answer = score(model, {"dataframe_records": [{"income": 1.0}]})
    assert "debt_ratio" in answer.body["error"]["details"]


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

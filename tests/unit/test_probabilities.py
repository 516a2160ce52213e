"""The answer with its class probabilities in one pass: exactly what `model.predict` and `predict_proba` give,
and only where that is exact."""

from __future__ import annotations

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pytest
from mlflow.models import infer_signature
from mlflow.pyfunc.scoring_server import infer_and_parse_data
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from steward.dev.credit_model import FEATURES, SENSITIVE, applicants, train
from steward.serving import probabilities
from steward.serving.capture import PROBA_FIELD
from steward.serving.scoring import score


def _saved(tmp_path, name, sk_model, frame, **kwargs):
    path = tmp_path / name
    mlflow.sklearn.save_model(
        sk_model, str(path), signature=infer_signature(frame, sk_model.predict(frame)), **kwargs
    )
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    data = applicants(1500, seed=3)
    pipeline = train(data)
    model = _saved(tmp_path_factory.mktemp("p"), "pipe", pipeline, data[FEATURES].astype("float64"))
    return model, pipeline


def test_one_pass_gives_exactly_the_models_answer_and_its_probabilities(credit):
    model, pipeline = credit
    assert probabilities._one_pass_pipeline(model) is not None  # the path under test is the one-pass one
    # Integer columns where the signature says double: MLflow's enforcement converts them, as predict does.
    rows = applicants(400, seed=21)[FEATURES + SENSITIVE].to_dict(orient="records")
    data = infer_and_parse_data({"dataframe_records": rows}, model.metadata.get_input_schema())

    predictions, table = probabilities.predict(model, data, with_proba=True)

    np.testing.assert_array_equal(predictions, model.predict(data))
    expected = pipeline.predict_proba(data[FEATURES].astype("float64"))
    assert table is not None and len(table) == 400
    np.testing.assert_allclose([[row["0"], row["1"]] for row in table], expected, rtol=0, atol=1e-12)
    # Without the probabilities the answer is the pyfunc's own, untouched.
    alone, none = probabilities.predict(model, data, with_proba=False)
    assert none is None
    np.testing.assert_array_equal(alone, predictions)


def test_one_pass_only_where_it_is_exact(tmp_path):
    frame = applicants(300, seed=5)[FEATURES].astype("float64")
    labels = applicants(300, seed=5)["defaulted"]
    bare = LogisticRegression(max_iter=500).fit(frame, labels)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(frame, labels)
    # Not a pipeline: nothing to share; served through predict_proba: the answer is already probabilities.
    assert probabilities._one_pass_pipeline(_saved(tmp_path, "bare", bare, frame)) is None
    as_proba = _saved(tmp_path, "proba", pipeline, frame, pyfunc_predict_fn="predict_proba")
    assert probabilities._one_pass_pipeline(as_proba) is None
    # A pipeline ending in a regressor gives no probabilities.
    from sklearn.linear_model import LinearRegression

    regressor = make_pipeline(StandardScaler(), LinearRegression()).fit(frame, labels.astype(float))
    assert probabilities._one_pass_pipeline(_saved(tmp_path, "reg", regressor, frame)) is None
    # The two-question path still gives the probabilities of a bare classifier.
    model = _saved(tmp_path, "bare2", bare, frame)
    predictions, table = probabilities.predict(model, frame, with_proba=True)
    np.testing.assert_array_equal(predictions, bare.predict(frame))
    assert table is not None
    np.testing.assert_allclose([row["1"] for row in table], bare.predict_proba(frame)[:, 1], atol=1e-12)


def test_input_the_schema_refuses_raises_as_model_predict_does(credit):
    from mlflow.exceptions import MlflowException

    model, _ = credit
    data = applicants(2, seed=1)[FEATURES].astype({"income": str})
    data.loc[0, "income"] = "a lot"
    with pytest.raises(MlflowException):
        model.predict(data)
    with pytest.raises(MlflowException):  # which score() answers as the caller's INVALID_INPUT
        probabilities.predict(model, data, with_proba=True)
    answer = score(
        model, {"dataframe_records": data.iloc[1:].astype({"income": float}).to_dict("records")}, "r"
    )
    assert answer.status == 200 and PROBA_FIELD not in answer.body
    with_proba = score(
        model,
        {"dataframe_records": data.iloc[1:].astype({"income": float}).to_dict("records")},
        "r",
        with_proba=True,
    )
    assert with_proba.status == 200 and set(with_proba.body[PROBA_FIELD][0]) == {"0", "1"}

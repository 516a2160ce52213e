"""The faulty credit model: fails on a fixed share of rows, as a 500 through scoring, and can be slow."""

from __future__ import annotations

import time

import mlflow.pyfunc
import pandas as pd
import pytest

from steward.dev.credit_model import FEATURES, applicants, fails_on, faulty_model
from steward.serving.scoring import ErrorCode, score


@pytest.fixture(scope="module")
def rows():
    return applicants(300, seed=99)[FEATURES].to_dict(orient="records")


def _saved(tmp_path, **faults):
    wrapped, signature = faulty_model(n=500, seed=7, **faults)
    mlflow.pyfunc.save_model(tmp_path / "model", python_model=wrapped, signature=signature)
    return mlflow.pyfunc.load_model(str(tmp_path / "model")), wrapped.model


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_the_failing_share_is_close_to_the_asked_share(share):
    data = applicants(4000, seed=5)[FEATURES].itertuples(index=False)
    failing = sum(fails_on(row, share) for row in data)
    assert failing / 4000 == pytest.approx(share, abs=0.03)


def test_failing_rows_answer_500_and_the_others_the_plain_models_answer(tmp_path, rows):
    model, plain = _saved(tmp_path, error_share=0.3)
    expected_failures = [fails_on([r[f] for f in FEATURES], 0.3) for r in rows]
    assert 0 < sum(expected_failures) < len(rows)

    for row, should_fail in zip(rows, expected_failures, strict=True):
        answer = score(model, {"dataframe_records": [row]})
        if should_fail:
            assert answer.status == 500, answer.body
            assert answer.body["error"]["code"] == ErrorCode.MODEL_ERROR
            # The caller learns that the model failed, never the exception's text (it is logged).
            assert "injected fault" not in answer.body["error"]["message"]
        else:
            assert answer.status == 200, answer.body
            assert answer.body["predictions"] == [int(plain.predict(pd.DataFrame([row])[FEATURES])[0])]


def test_extra_columns_are_dropped_before_the_fault_check(tmp_path, rows):
    # Requests carry gender and age_band; the signature drops them, so the same rows fail with or without.
    model, _ = _saved(tmp_path, error_share=0.5)
    row = next(r for r in rows if fails_on([r[f] for f in FEATURES], 0.5))
    assert score(model, {"dataframe_records": [{**row, "gender": "female"}]}).status == 500


def test_delay_slows_every_call(tmp_path, rows):
    model, _ = _saved(tmp_path, delay_ms=60)
    started = time.perf_counter()
    answer = score(model, {"dataframe_records": rows[:1]})
    assert answer.status == 200
    assert time.perf_counter() - started >= 0.06


@pytest.mark.parametrize(
    ("faults", "message"), [({"error_share": 1.5}, "error_share"), ({"delay_ms": -1}, "delay")]
)
def test_nonsense_faults_are_refused(faults, message):
    with pytest.raises(ValueError, match=message):
        faulty_model(n=100, **faults)

"""A version's answer and, for a captured request, its class probabilities.

The probabilities are a second question to the model. Asked naively (`predict_proba` after `predict`), a
scikit-learn pipeline runs its transformers twice, and for a small model the transformers are most of the
cost: capture then doubled a request's model time. Where it is exact, both questions share one pass: a
`mlflow.sklearn` pipeline served through `predict` transforms the (schema-enforced) input once, and its final
estimator answers both. Anything else is asked twice, as before.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow.pyfunc import PyFuncModel, _validate_prediction_input

log = logging.getLogger(__name__)

Probabilities = list[dict[str, float]]


def predict(
    model: PyFuncModel, data: Any, with_proba: bool, request_id: str = ""
) -> tuple[Any, Probabilities | None]:
    """The model's predictions, exactly as `model.predict(data)` gives them, and the class probabilities
    when asked for and the model gives them. Errors of the prediction propagate; a failure of the
    probabilities costs the record its probabilities, never the caller its answer."""
    pipeline = _one_pass_pipeline(model) if with_proba else None
    if pipeline is None:
        predictions = model.predict(data)
        return predictions, class_probabilities(model, data, request_id) if with_proba else None
    # What PyFuncModel.predict does before calling the sklearn flavour's `predict`, which is
    # Pipeline.predict: every transformer's `transform`, then the final estimator's `predict`.
    enforced, _ = _validate_prediction_input(
        data, None, model.metadata.get_input_schema(), model.metadata.get_params_schema(), model.loader_module
    )
    transformed = pipeline[:-1].transform(enforced)
    final = pipeline[-1]
    predictions = final.predict(transformed)
    return predictions, _table(lambda: final.predict_proba(transformed), final.classes_, request_id)


def class_probabilities(model: PyFuncModel, data: Any, request_id: str = "") -> Probabilities | None:
    """Per row, class -> probability, where the model gives them: a classifier flavour whose raw model has
    `predict_proba` and `classes_` (scikit-learn and look-alikes)."""
    try:
        raw = model.get_raw_model()
    except NotImplementedError:
        return None
    predict_proba, classes = getattr(raw, "predict_proba", None), getattr(raw, "classes_", None)
    if predict_proba is None or classes is None:
        return None
    return _table(lambda: predict_proba(data), classes, request_id)


def _table(compute: Any, classes: Any, request_id: str) -> Probabilities | None:
    try:
        table = compute()
        names = [str(c.item() if hasattr(c, "item") else c) for c in classes]
        return [{name: float(p) for name, p in zip(names, row, strict=True)} for row in table]
    except Exception as exc:  # noqa: BLE001 - the answer is already computed; the record goes without them
        log.info("request %s: no class probabilities: %s: %s", request_id, type(exc).__name__, exc)
        return None


def _one_pass_pipeline(model: PyFuncModel) -> Any | None:
    """The scikit-learn Pipeline behind `model` when its `predict` is exactly transform-then-final-predict
    (sklearn flavour served through `predict`, metadata routing off, a final classifier); else None."""
    if model.loader_module != "mlflow.sklearn":
        return None
    if model.metadata.flavors.get("python_function", {}).get("predict_fn", "predict") != "predict":
        return None
    import sklearn
    from sklearn.pipeline import Pipeline

    if sklearn.get_config().get("enable_metadata_routing"):
        return None  # Pipeline.predict then routes parameters through the steps
    raw = model.get_raw_model()
    if not isinstance(raw, Pipeline) or len(raw.steps) < 2:
        return None
    final = raw.steps[-1][1]
    if not (hasattr(final, "predict_proba") and hasattr(final, "classes_")):
        return None
    return raw

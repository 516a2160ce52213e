"""A small, deterministic credit-scoring model for the demo and the tests.

Applicants are synthetic (seeded), so every machine trains the same model. `gender` and `age_band` are kept
in the data for the fairness monitors but are not model inputs; MLflow's signature enforcement drops them
when a request carries them.

`register_faulty` registers the same model behind a wrapper that fails on a fixed share of rows and/or answers
slowly: a bad canary on demand, for the router's tests and the rollback demo. `register_unfair` registers one
that discriminates by gender without seeing it, through a proxy: in these applicants, men ask for larger loans
more often than women (three in four applicants above the median loan are men), and the unfair version refuses
every large loan. `applicants(income_factor=0.7)` is a population whose incomes fell by 30 %: drift.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

FEATURES = ["income", "debt_ratio", "credit_history_months", "late_payments", "loan_amount"]
SENSITIVE = ["gender", "age_band"]


# exp(9.5): the median of the loan amounts drawn below.
MEDIAN_LOAN = 13_360.0
# Share of loans above MEDIAN_LOAN asked by men (and below it, by women): gender's proxy.
PROXY_STRENGTH = 0.75


def applicants(n: int, seed: int = 7, *, income_factor: float = 1.0) -> pd.DataFrame:
    """Applicants with a `defaulted` label drawn from a known logistic rule (on the incomes as they are,
    `income_factor` times the usual ones)."""
    if income_factor <= 0:
        raise ValueError(f"income_factor must be positive, got {income_factor}")
    rng = np.random.default_rng(seed)
    age = rng.integers(21, 75, n)
    frame = pd.DataFrame(
        {
            "income": (rng.lognormal(10.6, 0.45, n) * income_factor).round(0),
            "debt_ratio": rng.beta(2, 5, n).round(3),
            "credit_history_months": np.minimum((age - 18) * 12, rng.integers(0, 480, n)),
            "late_payments": rng.poisson(0.8, n),
            "loan_amount": rng.lognormal(9.5, 0.6, n).round(0),
            "gender": rng.choice(["female", "male"], n),
            "age_band": pd.cut(age, [0, 30, 50, 120], labels=["<30", "30-50", "50+"]).astype(str),
        }
    )
    logit = (
        -1.2
        - 0.00003 * (frame["income"] - 40000)
        + 4.0 * (frame["debt_ratio"] - 0.3)
        - 0.004 * frame["credit_history_months"]
        + 0.9 * frame["late_payments"]
        + 0.00004 * (frame["loan_amount"] - 13000)
    )
    frame["defaulted"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame["gender"] = _gender_by_loan(frame["gender"].to_numpy(), frame["loan_amount"].to_numpy(), seed)
    return frame


def _gender_by_loan(drawn: np.ndarray, loan: np.ndarray, seed: int) -> np.ndarray:
    """Half the applicants keep their uniformly drawn gender, the other half take the one typical of their
    loan size: PROXY_STRENGTH of large loans go to men. A generator of its own leaves every other column (and
    so the models trained on them) as the seed always made them."""
    typical = np.where(loan > MEDIAN_LOAN, "male", "female")
    keep = np.random.default_rng([seed, 1]).random(len(drawn)) < 2 * (1 - PROXY_STRENGTH)
    return np.where(keep, drawn, typical)


def train(data: pd.DataFrame) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(data[FEATURES].astype("float64"), data["defaulted"])
    return model


def training_metrics(model: Any, data: pd.DataFrame) -> dict[str, float]:
    """Named as the quality monitor names its figures, for thresholds relative to training."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    inputs, truth = data[FEATURES].astype("float64"), data["defaulted"]
    predicted = model.predict(inputs)
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
        "f1": float(f1_score(truth, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(truth, model.predict_proba(inputs)[:, 1])),
    }


def log_training_data(model: Any, data: pd.DataFrame) -> str:
    """Logs the training frame (with the model's predictions, for prediction drift) as the run's `training`
    dataset: the drift monitors' default reference. Returns its URI."""
    from steward.monitors.reference import log_reference

    frame = data[[*FEATURES, *SENSITIVE, "defaulted"]].assign(
        prediction=model.predict(data[FEATURES].astype("float64"))
    )
    return log_reference(frame, targets="defaulted")


def register(tracking_uri: str, model_name: str, n: int = 4000, seed: int = 7) -> str:
    """Train on `n` applicants and register a new version of `model_name`; returns the version."""
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    data = applicants(n, seed)
    model = train(data)
    inputs = data[FEATURES].astype("float64")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"{model_name}-training")
    with mlflow.start_run(run_name=f"{model_name}-seed{seed}"):
        mlflow.log_params({"n": n, "seed": seed, "algorithm": "logistic_regression"})
        mlflow.log_metric("train_accuracy", float(model.score(inputs, data["defaulted"])))
        mlflow.log_metrics(training_metrics(model, data))
        log_training_data(model, data)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(inputs, model.predict(inputs)),
            input_example=inputs.head(2),
            registered_model_name=model_name,
            # Named, not inferred: inference exports the whole project environment, slowly.
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", "pandas<3"],
        )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"MLflow did not register a version of {model_name}")
    return str(version)


def fails_on(row: Iterable[float], error_share: float) -> bool:
    """Whether the faulty model raises on this row of FEATURES values.

    A hash of the values, not a random draw: the same request fails on every replica and every retry, and a
    test can count the failures it should see.
    """
    text = ",".join(repr(float(v)) for v in row)
    draw = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % 10_000
    return draw < round(error_share * 10_000)


class FaultyCreditModel(PythonModel):
    """The credit model with injected faults.

    Defined at module level so that MLflow pickles a reference to this class, which replicas import from the
    installed package, rather than the class body.
    """

    def __init__(self, model: Any, error_share: float = 0.0, delay_ms: float = 0.0) -> None:
        if not 0.0 <= error_share <= 1.0:
            raise ValueError(f"error_share must be within [0, 1], got {error_share}")
        if delay_ms < 0:
            raise ValueError(f"delay_ms must not be negative, got {delay_ms}")
        self.model = model
        self.error_share = error_share
        self.delay_ms = delay_ms

    # The DataFrame annotation tells MLflow not to validate by type hint: the logged signature does that.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        features = model_input[FEATURES].astype("float64")
        failing = [
            i for i, row in enumerate(features.itertuples(index=False)) if fails_on(row, self.error_share)
        ]
        if failing:
            raise RuntimeError(
                f"injected fault on {len(failing)} of {len(features)} row(s), first at {failing[0]}"
            )
        return self.model.predict(features)


def faulty_model(
    n: int = 4000, seed: int = 7, *, error_share: float = 0.0, delay_ms: float = 0.0
) -> tuple[FaultyCreditModel, Any]:
    """The wrapped model and its signature (the plain model's), trained as `register` trains."""
    from mlflow.models import infer_signature

    data = applicants(n, seed)
    model = train(data)
    inputs = data[FEATURES].astype("float64")
    return FaultyCreditModel(model, error_share, delay_ms), infer_signature(inputs, model.predict(inputs))


def register_faulty(
    tracking_uri: str,
    model_name: str,
    *,
    error_share: float = 0.0,
    delay_ms: float = 0.0,
    n: int = 4000,
    seed: int = 7,
) -> str:
    """Register a new version of `model_name` that raises on `error_share` of its rows (deterministically)
    and sleeps `delay_ms` per call; returns the version."""
    import mlflow
    import sklearn

    wrapped, signature = faulty_model(n, seed, error_share=error_share, delay_ms=delay_ms)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"{model_name}-training")
    with mlflow.start_run(run_name=f"{model_name}-seed{seed}-faulty"):
        mlflow.log_params({"n": n, "seed": seed, "error_share": error_share, "delay_ms": delay_ms})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapped,
            signature=signature,
            # No input example: MLflow would score it while logging, and it may be a failing row.
            registered_model_name=model_name,
            pip_requirements=["mlflow", f"scikit-learn=={sklearn.__version__}", "pandas<3"],
        )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"MLflow did not register a version of {model_name}")
    return str(version)


class ProxyBiasedCreditModel(PythonModel):
    """The credit model, but every loan above `max_loan` is refused (predicted to default).

    It never sees gender, yet because large loans are mostly asked by men (see `applicants`), it approves men
    at about half the rate of women: the kind of version a fairness gate exists to stop.
    """

    def __init__(self, model: Any, max_loan: float) -> None:
        self.model = model
        self.max_loan = max_loan

    def decide(self, features: pd.DataFrame) -> Any:
        predicted = self.model.predict(features)
        return np.where(features["loan_amount"].to_numpy() > self.max_loan, 1, predicted)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.decide(model_input[FEATURES].astype("float64"))


def register_unfair(
    tracking_uri: str, model_name: str, *, n: int = 4000, seed: int = 7, refused_above_quantile: float = 0.6
) -> str:
    """Register a version that refuses loans above this quantile of the training loans; returns the version.
    Its training data and metrics are logged as `register` logs them, so its monitors have a reference."""
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    data = applicants(n, seed)
    inputs = data[FEATURES].astype("float64")
    wrapped = ProxyBiasedCreditModel(train(data), float(data["loan_amount"].quantile(refused_above_quantile)))
    decider = _Decider(wrapped)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"{model_name}-training")
    with mlflow.start_run(run_name=f"{model_name}-seed{seed}-unfair"):
        mlflow.log_params({"n": n, "seed": seed, "max_loan": wrapped.max_loan})
        log_training_data(decider, data)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapped,
            signature=infer_signature(inputs, wrapped.decide(inputs)),
            registered_model_name=model_name,
            pip_requirements=["mlflow", f"scikit-learn=={sklearn.__version__}", "pandas<3"],
        )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"MLflow did not register a version of {model_name}")
    return str(version)


class _Decider:
    """`predict(features)` of a wrapped model, as log_training_data calls a plain scikit-learn model."""

    def __init__(self, wrapped: ProxyBiasedCreditModel) -> None:
        self.wrapped = wrapped

    def predict(self, features: pd.DataFrame) -> Any:
        return self.wrapped.decide(features)

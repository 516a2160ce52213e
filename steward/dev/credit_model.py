"""A small, deterministic credit-scoring model for the demo and the tests.

Applicants are synthetic (seeded), so every machine trains the same model. `gender` and `age_band` are kept
in the data for the fairness monitors but are not model inputs; MLflow's signature enforcement drops them
when a request carries them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["income", "debt_ratio", "credit_history_months", "late_payments", "loan_amount"]
SENSITIVE = ["gender", "age_band"]


def applicants(n: int, seed: int = 7) -> pd.DataFrame:
    """Applicants with a `defaulted` label drawn from a known logistic rule."""
    rng = np.random.default_rng(seed)
    age = rng.integers(21, 75, n)
    frame = pd.DataFrame(
        {
            "income": rng.lognormal(10.6, 0.45, n).round(0),
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
    return frame


def train(data: pd.DataFrame) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(data[FEATURES].astype("float64"), data["defaulted"])
    return model


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

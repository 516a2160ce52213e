"""Helpers for the integration tests (a module of its own: `conftest` is a name every test folder has)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

BUCKET = "steward-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last seen: {last!r}")


def predict(url: str, records: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(url, json={"dataframe_records": records}, timeout=30)


def applicant_records(n: int, seed: int = 99) -> list[dict[str, Any]]:
    from steward.dev.credit_model import FEATURES, SENSITIVE, applicants

    records: list[dict[str, Any]] = applicants(n, seed)[FEATURES + SENSITIVE].to_dict(orient="records")
    return records


def expected_classes(tracking_uri: str, version: str, records: list[dict[str, Any]]) -> list[int]:
    """What the registered model itself answers, loaded in-process, to compare with the served answer."""
    import mlflow.pyfunc
    import pandas as pd

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    model = mlflow.pyfunc.load_model(f"models:/credit-risk/{version}")
    from steward.dev.credit_model import FEATURES

    return [int(x) for x in model.predict(pd.DataFrame(records)[FEATURES].astype("float64"))]


def wait_gone(ray_client: Any, app_name: str, timeout_s: float = 60) -> None:
    """Ray deletes an application asynchronously (status DELETING first): wait until it is gone."""
    wait_until(lambda: ray_client.get_application(app_name) is None, timeout_s, f"Serve app {app_name} to go")

"""The MLflow client says "not found" only when MLflow says so, and never waits forever."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from steward.adapters.errors import AdapterError, Rejected, Unreachable
from steward.adapters.mlflow_registry import MlflowRegistry, ModelNotFound, VersionNotFound

LOGIN_PAGE = "<!DOCTYPE html><html><body><form action='/sso/login'>Sign in</form></body></html>"
VERSION_3 = {
    "model_version": {"name": "credit-risk", "version": "3", "status": "READY", "source": "s3://b/m"}
}


def registry(answer: Callable[[httpx.Request], httpx.Response]) -> MlflowRegistry:
    return MlflowRegistry("http://mlflow:5000", transport=httpx.MockTransport(answer))


def mlflow_error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error_code": code, "message": message})


def by_path(answers: dict[str, httpx.Response]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        return answers[request.url.path.removeprefix("/api/2.0/mlflow")]

    return answer


NOT_FOUND_CASES = [
    # (case, answer, what resolve raises)
    (
        "MLflow: no such version",
        by_path(
            {
                "/model-versions/get": mlflow_error(
                    404, "RESOURCE_DOES_NOT_EXIST", "Model Version not found"
                ),
                "/registered-models/get": httpx.Response(
                    200, json={"registered_model": {"name": "credit-risk"}}
                ),
                "/model-versions/search": httpx.Response(200, json={"model_versions": [{"version": "2"}]}),
            }
        ),
        VersionNotFound,
    ),
    (
        "MLflow: no such model",
        by_path(
            {
                "/model-versions/get": mlflow_error(404, "RESOURCE_DOES_NOT_EXIST", "not found"),
                "/registered-models/get": mlflow_error(404, "RESOURCE_DOES_NOT_EXIST", "not found"),
            }
        ),
        ModelNotFound,
    ),
    # An SSO proxy in front of MLflow answers its login page with 200: nothing is known about the model.
    (
        "an HTML 200",
        lambda r: httpx.Response(200, text=LOGIN_PAGE, headers={"content-type": "text/html"}),
        Rejected,
    ),
    # A failing server or proxy whose error page happens to quote MLflow's words knows nothing for sure.
    (
        "a 5xx mentioning RESOURCE_DOES_NOT_EXIST",
        lambda r: mlflow_error(503, "RESOURCE_DOES_NOT_EXIST", "backend store is down"),
        Unreachable,
    ),
    (
        "a 502 HTML page",
        lambda r: httpx.Response(502, text="<html>Bad Gateway RESOURCE_DOES_NOT_EXIST</html>"),
        Unreachable,
    ),
    ("a proxy's own HTML 404", lambda r: httpx.Response(404, text="<html>404 Not Found</html>"), Rejected),
    ("JSON without a model version", lambda r: httpx.Response(200, json={"unexpected": True}), Rejected),
]


@pytest.mark.parametrize(("case", "answer", "raised"), NOT_FOUND_CASES, ids=[c[0] for c in NOT_FOUND_CASES])
def test_not_found_only_when_mlflow_says_so(case, answer, raised):
    with pytest.raises(AdapterError) as info:
        registry(answer).resolve("credit-risk", version="3")
    assert type(info.value) is raised, info.value.message


def test_an_html_answer_says_what_to_check():
    html = registry(lambda r: httpx.Response(200, text=LOGIN_PAGE, headers={"content-type": "text/html"}))
    with pytest.raises(Rejected, match="MLFLOW_TRACKING_URI") as info:
        html.resolve("credit-risk", version="3")
    assert "text/html" in info.value.message and not info.value.temporary


def test_a_missing_alias_is_alias_not_found():
    answer = by_path(
        {
            # MLflow 3.17 answers a missing alias with 400 INVALID_PARAMETER_VALUE, not a 404.
            "/registered-models/alias": mlflow_error(
                400, "INVALID_PARAMETER_VALUE", "Registered model alias champion not found."
            ),
            "/registered-models/get": httpx.Response(200, json={"registered_model": {"name": "credit-risk"}}),
            "/model-versions/search": httpx.Response(200, json={"model_versions": [{"version": "2"}]}),
        }
    )
    with pytest.raises(VersionNotFound) as info:
        registry(answer).resolve("credit-risk", alias="champion")
    assert info.value.is_alias and info.value.existing == ["2"]


def test_a_found_version_resolves():
    found = registry(lambda r: httpx.Response(200, json=VERSION_3)).resolve("credit-risk", version="3")
    assert (found.version, found.model_uri) == ("3", "models:/credit-risk/3")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: what a hung MLflow or proxy looks like."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_every_call_gives_up_after_its_timeout(silent_server: int):
    hung = MlflowRegistry(f"http://127.0.0.1:{silent_server}", timeout_s=0.5)
    try:
        for call in (
            lambda: hung.resolve("credit-risk", version="3"),
            lambda: hung.versions("credit-risk"),
            lambda: hung.set_version_tag("credit-risk", "3", "k", "v"),
        ):
            start = time.monotonic()
            with pytest.raises(Unreachable):
                call()
            assert time.monotonic() - start < 5
    finally:
        hung.close()

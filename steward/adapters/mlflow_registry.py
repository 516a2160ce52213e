"""The MLflow model registry over its REST API.

REST rather than the `mlflow` package on purpose: the operator image stays free of MLflow's dependency tree,
and the three calls it needs are stable parts of the public API.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from steward.adapters.errors import NotFound, NotReady, Rejected, Unauthorized, Unreachable

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# Pinned versions remembered for passes that may reuse a recent answer (bounded: least recently used go).
PINNED_CACHE_SIZE = 4096


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    source: str | None
    run_id: str | None
    status: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class MlflowRegistry:
    def __init__(
        self,
        tracking_uri: str,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self._clock = clock
        # (name, version) -> (when resolved, what): only READY versions, the ones a version number pins.
        self._pinned: OrderedDict[tuple[str, str], tuple[float, ModelVersion]] = OrderedDict()
        self._pinned_guard = threading.Lock()  # passes resolve from several threads
        headers: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {token}"
        elif (user := os.environ.get("MLFLOW_TRACKING_USERNAME")) is not None:
            auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        self._http = httpx.Client(
            base_url=f"{self.tracking_uri}/api/2.0/mlflow",
            headers=headers,
            auth=auth,
            timeout=timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"MLflow at {self.tracking_uri} is unreachable: {exc}") from exc
        if response.status_code in (401, 403):
            raise Unauthorized(
                f"MLflow at {self.tracking_uri} refused the credentials ({response.status_code}): "
                "set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD"
            )
        if response.status_code >= 500:
            # Whatever the body says: a failing server (or a proxy in front of it) knows nothing for sure.
            raise Unreachable(
                f"MLflow at {self.tracking_uri} failed ({response.status_code}): {response.text[:300]}"
            )
        return response

    def _json(self, response: httpx.Response, path: str) -> dict[str, Any]:
        """MLflow's JSON answer. Anything else (an SSO proxy's login page answers 200 with HTML) is no
        answer about models at all, least of all "not found"."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            kind = response.headers.get("content-type", "no content type")
            raise Rejected(
                f"MLflow at {self.tracking_uri} answered {path} with {response.status_code} {kind}, not "
                "MLflow's JSON (a proxy's login page?): check MLFLOW_TRACKING_URI and the credentials; "
                f"the answer begins {response.text[:120]!r}"
            )
        return body

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """GET; None only when MLflow itself says the resource does not exist."""
        response = self._send("GET", path, params=params)
        body = self._json(response, path)
        if response.status_code >= 400:
            if _says_missing(path, body):
                return None
            raise Rejected(f"MLflow refused {path} {params} ({response.status_code}): {response.text[:300]}")
        return body

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Tag a model version, so that model owners see deployment facts in the MLflow UI."""
        path = "/model-versions/set-tag"
        response = self._send(
            "POST", path, json={"name": name, "version": version, "key": key, "value": value}
        )
        self._json(response, path)
        if response.status_code >= 400:
            raise Rejected(
                f"MLflow refused to tag {name} v{version} ({response.status_code}): {response.text[:300]}"
            )

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (MLflow moves an existing alias; setting it again changes nothing)."""
        path = "/registered-models/alias"
        response = self._send("POST", path, json={"name": name, "alias": alias, "version": version})
        self._json(response, path)
        if response.status_code >= 400:
            raise Rejected(
                f"MLflow refused to point @{alias} of {name} at version {version} ({response.status_code}): "
                f"{response.text[:300]}"
            )

    def delete_alias(self, name: str, alias: str, if_version: str) -> bool:
        """Remove `alias` if it names `if_version`; False when it named another version or none."""
        path = "/registered-models/alias"
        body = self._get(path, {"name": name, "alias": alias})
        current = (body or {}).get("model_version") or {}
        if str(current.get("version")) != if_version:
            return False
        # MLflow reads a DELETE's parameters from its JSON body, not the query string.
        response = self._send("DELETE", path, json={"name": name, "alias": alias})
        answer = self._json(response, path)
        if response.status_code >= 400 and not _says_missing(path, answer):
            raise Rejected(
                f"MLflow refused to remove @{alias} of {name} ({response.status_code}): {response.text[:300]}"
            )
        return True

    def versions(self, name: str) -> list[str]:
        """Versions of `name`, newest first (at most 50, enough to tell a user what exists)."""
        quoted = name.replace("'", "\\'")
        body = self._get(
            "/model-versions/search",
            {"filter": f"name='{quoted}'", "max_results": 50, "order_by": "version_number DESC"},
        )
        return [str(v["version"]) for v in (body or {}).get("model_versions", [])]

    def _model_exists(self, name: str) -> bool:
        return self._get("/registered-models/get", {"name": name}) is not None

    def resolve(
        self, name: str, version: str | None = None, alias: str | None = None, max_age_s: float = 0.0
    ) -> ModelVersion:
        """The version that `version` or `alias` names, checked to exist and be ready to load. A pinned
        version resolved READY within `max_age_s` is answered from memory: a version's source and run never
        change, so the only news a repeated call can bring is its deletion, seen `max_age_s` later. An alias
        moves, and is always asked."""
        if version is not None and max_age_s > 0:
            with self._pinned_guard:
                held = self._pinned.get((name, version))
                if held is not None and self._clock() - held[0] < max_age_s:
                    self._pinned.move_to_end((name, version))
                    return held[1]
        resolved_at = self._clock()
        try:
            found = self._resolve(name, version, alias)
        except NotFound:
            if version is not None:  # deleted: no pass at rest answers from what was remembered of it
                with self._pinned_guard:
                    self._pinned.pop((name, version), None)
            raise
        if version is not None:
            with self._pinned_guard:
                self._pinned[(name, version)] = (resolved_at, found)
                self._pinned.move_to_end((name, version))
                while len(self._pinned) > PINNED_CACHE_SIZE:
                    self._pinned.popitem(last=False)
        return found

    def _resolve(self, name: str, version: str | None, alias: str | None) -> ModelVersion:
        if version is not None:
            body = self._get("/model-versions/get", {"name": name, "version": version})
            wanted = f"version {version}"
        elif alias is not None:
            body = self._get("/registered-models/alias", {"name": name, "alias": alias})
            wanted = f"alias @{alias}"
        else:
            raise ValueError("resolve() needs a version or an alias")
        if body is None:
            if not self._model_exists(name):
                raise ModelNotFound(name, self.tracking_uri)
            raise VersionNotFound(name, wanted, self.versions(name), alias is not None)
        raw = body.get("model_version")
        if not isinstance(raw, dict):
            raise Rejected(
                f"MLflow at {self.tracking_uri} answered without a model_version: {str(body)[:200]}"
            )
        found = ModelVersion(
            name=name,
            version=str(raw["version"]),
            source=raw.get("source"),
            run_id=raw.get("run_id") or None,
            status=str(raw.get("status", "READY")),
        )
        if found.status == "PENDING_REGISTRATION":
            raise NotReady(f"model {name} version {found.version} is still registering in MLflow")
        if found.status == "FAILED_REGISTRATION":
            raise Rejected(
                f"model {name} version {found.version} failed to register in MLflow: "
                f"{raw.get('status_message', 'no message')}; register it again"
            )
        return found


def _says_missing(path: str, body: dict[str, Any]) -> bool:
    """MLflow's own words for "no such model, version or alias" (a missing alias is a 400, not a 404)."""
    code, message = body.get("error_code"), str(body.get("message", ""))
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return (
        path == "/registered-models/alias"
        and code == "INVALID_PARAMETER_VALUE"
        and re.search(r"alias .* not found", message) is not None
    )


class ModelNotFound(NotFound):
    def __init__(self, name: str, tracking_uri: str) -> None:
        super().__init__(
            f"registered model {name!r} does not exist in MLflow at {tracking_uri}; "
            "register it first or fix spec.model.name"
        )


class VersionNotFound(NotFound):
    def __init__(self, name: str, wanted: str, existing: list[str], is_alias: bool) -> None:
        have = ", ".join(existing) if existing else "none"
        fix = "set the alias in MLflow" if is_alias else "register it or pick an existing version"
        super().__init__(f"model {name!r} has no {wanted}; existing versions: {have}; {fix}")
        self.is_alias = is_alias
        self.existing = existing

"""Where the rollout commands read a ModelDeployment and write their annotation: the local stack or a cluster.

Both sides answer through `DeploymentSource`, so every command behaves the same in local and cluster mode.
Failures become `SourceError`s whose message says what went wrong and what to do about it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import ValidationError

from steward.api.manifests import ManifestError, load_manifests
from steward.api.model_deployment import GROUP, PLURAL, VERSION, ModelDeployment
from steward.dev.store import LocalStore, spec_hash

if TYPE_CHECKING:
    from kubernetes.client import CustomObjectsApi

T = TypeVar("T")
CLUSTER_ENV = "STEWARD_CLUSTER"
REQUEST_TIMEOUT_S = 10.0


class SourceError(Exception):
    """The ModelDeployment cannot be read or annotated; the message is meant for the user."""


class DeploymentSource(Protocol):
    where: str  # for messages: "the local stack under .steward", "the cluster at https://..."

    def get(self, namespace: str, name: str) -> ModelDeployment | None: ...

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None: ...


def cluster_requested(context: str | None, kubeconfig: Path | None) -> bool:
    return bool(context or kubeconfig) or os.environ.get(CLUSTER_ENV, "").lower() in ("1", "true", "yes")


def open_source(home: Path, context: str | None, kubeconfig: Path | None) -> DeploymentSource:
    if cluster_requested(context, kubeconfig):
        return ClusterSource.connect(kubeconfig, context)
    return LocalSource(LocalStore(home))


class LocalSource:
    """The local stack: the applied manifest is what was asked, the stored object what the loop made of it."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.where = f"the local stack under {store.home}"

    def _manifest(self, namespace: str, name: str) -> ModelDeployment | None:
        for path in self.store.manifest_paths():
            try:
                found = load_manifests(path)
            except ManifestError:
                continue  # the loop skips an invalid hand-edited file too
            for md in found:
                if md.metadata.namespace == namespace and md.metadata.name == name:
                    return md
        return None

    def get(self, namespace: str, name: str) -> ModelDeployment | None:
        obj = self.store.get(namespace, name)
        manifest = self._manifest(namespace, name)
        if obj is None:
            if manifest is None:
                return None
            # Applied but not admitted yet: a cluster would already show generation 1 and no status.
            return manifest.model_copy(
                update={"metadata": manifest.metadata.model_copy(update={"generation": 1})}
            )
        md = obj.resource()
        if manifest is None:
            return md  # removal pending: the loop is finalizing it
        # A cluster bumps the generation when the spec is written; the loop only when it admits the manifest,
        # so show the generation the manifest will get: `status -w` then knows the operator is behind.
        generation = obj.generation + (spec_hash(manifest) != obj.spec_hash)
        metadata = md.metadata.model_copy(
            update={"generation": generation, "annotations": dict(manifest.metadata.annotations)}
        )
        return md.model_copy(update={"metadata": metadata})

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None:
        if not self.store.annotate(namespace, name, key, value):
            raise SourceError(
                f"ModelDeployment {namespace}/{name} has no manifest in {self.store.manifests} "
                "(it was deleted); apply it again with `steward dev apply -f FILE`"
            )


class ClusterSource:
    """A Kubernetes cluster, through the official client: GET the object, merge-patch its annotations."""

    def __init__(self, api: CustomObjectsApi, where: str) -> None:
        self.api = api
        self.where = where

    @classmethod
    def connect(cls, kubeconfig: Path | None, context: str | None) -> ClusterSource:
        try:
            from kubernetes import client, config
        except ImportError as exc:
            raise SourceError(
                "cluster mode needs the Kubernetes client: install it with `pip install 'steward[operator]'`"
            ) from exc
        configuration = client.Configuration()
        configuration.retries = 1  # an unreachable API fails in seconds, not after urllib3's default retries
        try:
            if kubeconfig is None and context is None and _in_a_pod():
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                api_client = client.ApiClient(configuration)
            else:
                api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=str(kubeconfig) if kubeconfig else None,
                    context=context,
                    client_configuration=configuration,
                )
        except (config.ConfigException, OSError, ValueError) as exc:
            source = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise SourceError(
                f"cannot load the Kubernetes configuration from {source}"
                f"{f' (context {context})' if context else ''}: {exc}; "
                "pass --kubeconfig PATH and --context NAME, or unset STEWARD_CLUSTER for the local stack"
            ) from exc
        host = api_client.configuration.host
        where = f"the cluster at {host}" + (f" (context {context})" if context else "")
        return cls(client.CustomObjectsApi(api_client), where)

    def _call(self, verb: str, namespace: str, name: str, call: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return call()
        except ApiException as exc:
            raise SourceError(
                explain_api_error(exc.status, exc.body, verb, f"{namespace}/{name}", self.where)
            ) from exc
        except (HTTPError, OSError) as exc:
            raise SourceError(
                f"cannot reach {self.where}: {_network_problem(exc)}; check the address and your network "
                "(VPN, proxy), or pick another --context"
            ) from exc

    def get(self, namespace: str, name: str) -> ModelDeployment | None:
        from kubernetes.client.exceptions import ApiException

        def fetch() -> Any:
            try:
                return self.api.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT_S
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        raw = self._call("get", namespace, name, fetch)
        if raw is None:
            return None
        try:
            return ModelDeployment.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise SourceError(
                f"ModelDeployment {namespace}/{name} in {self.where} does not parse "
                f"({field}: {first['msg']}); is this CLI older than the operator? Upgrade steward"
            ) from exc

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None:
        body = {"metadata": {"annotations": {key: value}}}
        self._call(
            "patch",
            namespace,
            name,
            lambda: self.api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )


def _network_problem(exc: Exception) -> str:
    """urllib3 wraps the cause in a long repr; keep the cause, e.g. "[Errno 111] Connection refused"."""
    text = str(getattr(exc, "reason", None) or exc)
    return text.rsplit("Failed to establish a new connection: ", 1)[-1]


def _in_a_pod() -> bool:
    """A CI job running in a pod, with a service account and no kubeconfig of its own."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


def explain_api_error(status: int | None, body: str | None, verb: str, key: str, where: str) -> str:
    """An API server's refusal as one sentence: what it said and what to do."""
    try:
        said = str(json.loads(body or "")["message"])
    except (ValueError, KeyError, TypeError):
        said = (body or "").strip()[:200]
    detail = f": {said}" if said else ""
    if status == 401:
        return (
            f"{where} did not accept your credentials (401 Unauthorized{detail}); log in again "
            "(refresh the token in your kubeconfig) or pick another --context"
        )
    if status == 403:
        return (
            f"{where} does not allow you to {verb} ModelDeployment {key} (403 Forbidden{detail}); "
            "ask your platform team for a Role with get and patch on modeldeployments.steward.io"
        )
    if status == 404:
        return (
            f"{where} has no ModelDeployment {key} (404{detail}); it may have been deleted meanwhile: "
            "`kubectl get md -n NAMESPACE` lists those there are"
        )
    if status is not None and status >= 500:
        return f"{where} failed to {verb} ModelDeployment {key} ({status}{detail}); try again in a moment"
    return f"{where} refused to {verb} ModelDeployment {key} ({status}{detail})"

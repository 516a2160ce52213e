"""The Kubernetes API client the operator's own calls use (Leases, training Jobs); Kopf has its own."""

from __future__ import annotations

from typing import Any


def kubernetes_api_client() -> Any:
    """An ApiClient from the pod's service account, else the kubeconfig; one retry, so that an unreachable
    API fails in seconds rather than after urllib3's default retries."""
    from kubernetes import client, config

    configuration = client.Configuration()
    configuration.retries = 1
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    except config.ConfigException:
        return config.new_client_from_config(client_configuration=configuration)  # type: ignore[no-untyped-call]

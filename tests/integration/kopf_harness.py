"""Kopf against kmock, as the integration tests run it (a module of its own, shared by the Kopf tests)."""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import kopf

RESOURCE = "steward.io/v1alpha1/modeldeployments"


def load_handlers() -> ModuleType:
    """Handlers read their configuration at import, as in the operator's container: import them afresh into a
    fresh registry (after the test has set the environment)."""
    kopf.set_default_registry(kopf.OperatorRegistry())
    import steward.operator.handlers as handlers

    return importlib.reload(handlers)


def serve_modeldeployments(kmock: Any, namespace: str) -> str:
    """Teach kmock the ModelDeployment resource and point Kopf's login at it; returns the API's URL."""
    api_url = str(kmock.url).rstrip("/")

    @kopf.on.login()
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api_url, token="test", default_namespace=namespace)

    kmock.resources.load_bundled()
    resource = kmock.resources[RESOURCE]
    resource.kind = "ModelDeployment"
    resource.namespaced = True
    resource.verbs = {"list", "watch", "get", "patch", "create", "delete"}
    resource.subresources = {"status"}
    return api_url


def start_operator(settings: kopf.OperatorSettings, namespace: str) -> Callable[[], threading.Thread]:
    """Run Kopf in its own thread and event loop, as in its container: on exit it cancels every task of the
    loop it runs in, and the test's loop also serves the emulated API. Returns `stop`, which signals it and
    hands back the thread to join."""
    flag = threading.Event()
    operator = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(
                registry=kopf.get_default_registry(),
                settings=settings,
                namespaces=[namespace],
                stop_flag=flag,
                standalone=True,
            )
        ),
        daemon=True,
    )
    operator.start()

    def stop() -> threading.Thread:
        flag.set()
        return operator

    return stop

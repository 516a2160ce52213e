"""Read a ModelDeployment and write its status from inside a Kopf daemon, through Kopf's own API client.

Kopf applies a daemon's `patch` only when the daemon function returns, and a reconcile loop never returns;
so the loop writes status itself. Kopf's client brings the operator's login, TLS and retry settings with it,
where a second client (kubernetes) would need its own configuration to reach the same server. These are
Kopf internals: the dependency is pinned to 1.45.x, and tests/unit/test_object_loop.py imports them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients.errors import APINotFoundError
from kopf._cogs.clients.patching import patch_obj
from kopf._cogs.structs.references import NamespaceName


class KopfObjectApi:
    def __init__(
        self,
        settings: kopf.OperatorSettings,
        resource: kopf.Resource,
        namespace: str | None,
        name: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.settings, self.resource, self.name = settings, resource, name
        self.namespace = cast(NamespaceName | None, namespace)
        self.logger = logger

    async def read(self) -> Mapping[str, Any] | None:
        try:
            body: Mapping[str, Any] = await kopf_api.get(
                url=self.resource.get_url(namespace=self.namespace, name=self.name),
                settings=self.settings,
                logger=self.logger,
            )
        except APINotFoundError:
            return None
        return body

    async def write_status(self, status: Mapping[str, Any]) -> Mapping[str, Any] | None:
        stored, _ = await patch_obj(
            settings=self.settings,
            resource=self.resource,
            namespace=self.namespace,
            name=self.name,
            patch=kopf.Patch({"status": dict(status)}),
            logger=self.logger,
        )
        if stored is None:
            return None
        result: Mapping[str, Any] = stored.get("status") or {}
        return result

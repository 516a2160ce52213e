"""The router's own traffic figures, read over HTTP from `<endpoint>/-/stats` (see steward.serving.app) with
the router's read token (steward.api.serve_app.router_access): the route is public, its reads are not."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from steward.adapters.errors import NotReady, Unreachable
from steward.api.serve_app import STATS_PATH, TrafficStats


class RouterStatsClient:
    def __init__(self, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def read(self, endpoint: str, read_token: str | None) -> TrafficStats:
        url = endpoint.rstrip("/") + STATS_PATH
        headers = {"Authorization": f"Bearer {read_token}"} if read_token else {}
        try:
            response = self._http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise Unreachable(f"the router's traffic figures at {url} are unreachable: {exc}") from exc
        if response.status_code == 404:
            # The proxy learns a new route a moment after the application starts.
            raise NotReady(f"no Steward router answers at {url} yet (is the router application running?)")
        if response.status_code == 401:
            # Temporary: a router whose config predates the operator's secret gets the new token with the next
            # plan. It lasts only if the operator has no secret, or two operators derive different ones.
            missing = "" if read_token else " (it has none: set STEWARD_ROUTER_SECRET_PATH or a Ray token)"
            raise Unreachable(f"the router at {url} refused the operator's read token{missing}")
        if response.status_code != 200:
            raise Unreachable(f"the router at {url} answered {response.status_code}: {response.text[:300]}")
        try:
            return TrafficStats.model_validate_json(response.content)
        except ValidationError as exc:
            raise Unreachable(f"the router at {url} answered figures Steward cannot read: {exc}") from exc

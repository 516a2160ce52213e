"""The contract between the operator, which plans Serve applications, and the Ray Serve code that runs them.

Plain pydantic, so that the operator can build configs and read traffic figures without importing Ray, and the
serving code validates what it is given against the same models.

One ModelDeployment is several Serve applications: a router application (ingress, on the route prefix) and
one application per live model version (no route). Ray derives a code version from an application's `args`, so
a change of args restarts every replica of that application; keeping each version in its own application means
adding a canary or removing the old version never restarts a replica of another version. Weights, shadowing
and stickiness live in the router's `user_config`, which Ray applies in place.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from steward.api.monitoring import CaptureSpec
from steward.api.rollout import Stickiness

ROUTER_IMPORT_PATH = "steward.serving.app:build_router"
VERSION_IMPORT_PATH = "steward.serving.app:build_version"
ROUTER_DEPLOYMENT = "Router"
RECORDER_DEPLOYMENT = "Recorder"
# Served by the router under its route prefix, to callers with the router's read token only (every GET,
# metadata at "/" included): cumulative traffic figures and the recent shadow pairs.
STATS_PATH = "/-/stats"
SHADOW_PATH = "/-/shadow"
# Upper bounds of the latency histogram, in milliseconds; one more bucket counts everything slower.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000,
)  # fmt: skip


def router_app_name(namespace: str, name: str) -> str:
    """`<namespace>.<name>`: injective, since neither a namespace nor a ModelDeployment's name (DNS labels,
    at most 63 characters each) can hold a dot, and so at most 127 characters. Ray Serve puts no rule on
    application names; version applications have always had a dot in theirs."""
    return f"{namespace}.{name}"


def version_app_name(router_app: str, version: str) -> str:
    # Two dots: never another deployment's router (one dot), never another router's version app.
    return f"{router_app}.v{version}"


def app_version(router_app: str, app: str) -> str | None:
    """The model version `app` serves if it is one of `router_app`'s version applications, else None.

    Exact, never by prefix: `team.fraud.v1x` or `team.fraud-x.v1` are someone else's."""
    match = re.fullmatch(re.escape(router_app) + r"\.v([1-9][0-9]*)", app)
    return None if match is None else match.group(1)


def version_deployment_name(version: str) -> str:
    return f"model-v{version}"


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def router_secret_from_ray_token(ray_token: str) -> bytes:
    """The operator secret when none is configured: derived, so the keys handed to routers reveal nothing of
    the Ray token, and stable across operator restarts, so routers are not reconfigured by a restart."""
    return _hmac_hex(ray_token.encode("utf-8"), "steward/router-secret").encode("ascii")


class RouterAccess(BaseModel):
    """One router's secrets, derived per ModelDeployment from the operator secret (`router_access`).

    Per deployment, so that a token seen on one model's route (it travels with every stats read) opens no
    other model's figures; two keys, so that the token, which travels, cannot un-hash customer keys.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # Callers of any GET (metadata, figures, shadow pairs) present it as `Authorization: Bearer <token>`.
    read_token: Annotated[str, Field(min_length=32, repr=False)]
    # Keys the hash that stands for a sticky key in shadow pairs; it never leaves the router's config.
    pseudonym_key: Annotated[str, Field(min_length=32, repr=False)]


def router_access(secret: bytes, deployment: str) -> RouterAccess:
    """Derived, not stored: the operator recomputes them for every plan and every stats read."""
    return RouterAccess(
        read_token=_hmac_hex(secret, f"steward/router-read-token/{deployment}"),
        pseudonym_key=_hmac_hex(secret, f"steward/sticky-key-pseudonym/{deployment}"),
    )


def sticky_key_hash(pseudonym_key: str, sticky_key: str) -> str:
    """What a shadow pair keeps instead of the customer's key: the same caller always maps to the same hash
    (pairs stay linkable), and only a holder of the operator secret can test a guess."""
    return _hmac_hex(pseudonym_key.encode("ascii"), sticky_key)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RouterArgs(_Frozen):
    """Builder arguments of a router application: fixed for the life of the ModelDeployment."""

    deployment: Annotated[str, Field(description="namespace/name of the ModelDeployment")]
    model_name: str


class VersionArgs(_Frozen):
    """Builder arguments of one version application: fixed for the life of that version's replicas."""

    model_name: str
    version: str
    model_uri: str


class ShadowConfig(_Frozen):
    """Mirror a share of the requests other versions answer to `version`; its answers are never returned."""

    version: str
    percent: Annotated[int, Field(ge=0, le=100)]


class InRouterModel(_Frozen):
    """The stable version while it takes live traffic, which the router replica loads itself and answers
    without a hop to its application (steward.serving.local_model); the version's application stays
    deployed, and answers through its handle until the router has loaded the model, or when the load fails."""

    version: str
    # What the version application loads (VersionArgs.model_uri).
    model_uri: str


class RouterConfig(_Frozen):
    """The router's `user_config`: changes here are applied in place, without restarting replicas."""

    # version -> name of the Serve application that serves it (deployment `model-v<version>` inside).
    versions: dict[str, str]
    weights: Annotated[dict[str, int], Field(description="version -> percent of live traffic")]
    shadow: ShadowConfig | None = None
    stickiness: Stickiness | None = None
    # None: the router answers no GET at all and keeps no sticky key in shadow pairs (fails closed).
    access: RouterAccess | None = None
    # spec.monitoring.capture: its sensitive features never reach a model, even without a store; requests
    # are recorded only when there is a monitoring store (the operator's STEWARD_MONITORING_URI) too.
    capture: CaptureSpec | None = None
    store_uri: str | None = None
    # None: every version answers through its application's handle.
    in_router: InRouterModel | None = None

    @model_validator(mode="after")
    def _weights_name_served_versions(self) -> RouterConfig:
        unknown = set(self.weights) - set(self.versions)
        if self.in_router is not None and self.in_router.version not in self.versions:
            unknown.add(self.in_router.version)
        if self.shadow is not None and self.shadow.version not in self.versions:
            unknown.add(self.shadow.version)
        if unknown:
            raise ValueError(f"router config names versions it does not serve: {sorted(unknown)}")
        return self


class TrafficCounts(_Frozen):
    """Cumulative figures of one version, since the recorder started (like Prometheus counters)."""

    requests: int = 0
    # 5xx answers and failed calls: the version's fault.
    errors: int = 0
    # 4xx answers from the version (input it refused): judged against stable's share of the same input.
    rejected: int = 0
    # len(LATENCY_BUCKETS_MS) + 1 counts: bucket i holds latencies in (bound[i-1], bound[i]], the last the
    # rest.
    latency_ms_buckets: list[int] = []


class PairCounts(_Frozen):
    """Shadowed requests whose two answers were compared."""

    compared: int = 0
    disagreed: int = 0


class CaptureStats(_Frozen):
    """Captured requests, summed over router replicas since the recorder started."""

    written: int = 0
    # Sampled requests not stored: buffer full, store down, or capture disabled (no hash key).
    dropped: int = 0
    last_error: str | None = None


class InRouterStats(_Frozen):
    """The stable version served inside the router replicas, summed over them since the recorder started."""

    # Answers given by the in-router model, per version (the rest of `live` went through handles).
    answered: dict[str, int] = {}
    # Of those, the answers scored on the router's event loop (a fast model, a small body), not in a thread.
    on_loop: int = 0
    loads: int = 0
    # Failed loads (each retried later) and in-router calls that failed and went to the handle instead.
    load_failures: int = 0
    fallbacks: int = 0
    last_error: str | None = None


class TrafficStats(_Frozen):
    """What `GET <route>/-/stats` returns."""

    # Changes when the recorder restarts and its counters start again from zero.
    recorder_id: str
    # Requests answered to callers, per version.
    live: dict[str, TrafficCounts] = {}
    # Mirrored requests whose answers were recorded and dropped, per shadow version.
    shadow: dict[str, TrafficCounts] = {}
    # Per shadow version: how often its answer differed from the one returned.
    pairs: dict[str, PairCounts] = {}
    # None when no router replica has capture configured.
    capture: CaptureStats | None = None
    # None when no router replica has an in-router model configured.
    in_router: InRouterStats | None = None


class ShadowPair(_Frozen):
    """One mirrored request: what the caller got and what the challenger would have said."""

    at: Annotated[float, Field(description="Unix time of the request")]
    primary_version: str
    shadow_version: str
    agree: bool
    primary: Annotated[object, Field(description="the returned predictions")]
    shadow: Annotated[object, Field(description="the challenger's predictions, or its error body")]
    primary_ms: float
    shadow_ms: float
    shadow_status: int
    # `sticky_key_hash(pseudonym_key, key)` of the caller's sticky key; never the key itself.
    sticky_key_hash: str | None = None


class ShadowLog(_Frozen):
    """What `GET <route>/-/shadow` returns: the most recent pairs, newest last."""

    recorder_id: str
    pairs: list[ShadowPair] = []

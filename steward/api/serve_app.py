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

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from steward.api.rollout import Stickiness

ROUTER_IMPORT_PATH = "steward.serving.app:build_router"
VERSION_IMPORT_PATH = "steward.serving.app:build_version"
ROUTER_DEPLOYMENT = "Router"
RECORDER_DEPLOYMENT = "Recorder"
# Served by the router under its route prefix: cumulative traffic figures and the recent shadow pairs.
STATS_PATH = "/-/stats"
SHADOW_PATH = "/-/shadow"
# Upper bounds of the latency histogram, in milliseconds; one more bucket counts everything slower.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000,
)  # fmt: skip


def version_app_name(router_app: str, version: str) -> str:
    # A dot cannot occur in a Kubernetes name, so a version application never collides with a router app.
    return f"{router_app}.v{version}"


def version_deployment_name(version: str) -> str:
    return f"model-v{version}"


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


class RouterConfig(_Frozen):
    """The router's `user_config`: changes here are applied in place, without restarting replicas."""

    # version -> name of the Serve application that serves it (deployment `model-v<version>` inside).
    versions: dict[str, str]
    weights: Annotated[dict[str, int], Field(description="version -> percent of live traffic")]
    shadow: ShadowConfig | None = None
    stickiness: Stickiness | None = None

    @model_validator(mode="after")
    def _weights_name_served_versions(self) -> RouterConfig:
        unknown = set(self.weights) - set(self.versions)
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
    sticky_key: str | None = None


class ShadowLog(_Frozen):
    """What `GET <route>/-/shadow` returns: the most recent pairs, newest last."""

    recorder_id: str
    pairs: list[ShadowPair] = []

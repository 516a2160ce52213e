"""A pretend world for driving decide() through whole rollouts: Ray applications that come up when asked,
a router whose counters grow with simulated traffic, and a clock. Pure: no Ray, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from builders import CONFIG, T0, md, resolved

from steward.api.model_deployment import ModelDeployment
from steward.api.serve_app import LATENCY_BUCKETS_MS, PairCounts, RouterConfig, TrafficCounts, TrafficStats
from steward.operator.actions import ApplyServeApplications, PostEvent, RecordAudit
from steward.operator.core import Decision, decide
from steward.operator.observations import Observations, Problem, ResolvedModel, ServeApps, ServeState


def _bucket(latency_ms: float) -> int:
    return next(
        (i for i, bound in enumerate(LATENCY_BUCKETS_MS) if latency_ms <= bound), len(LATENCY_BUCKETS_MS)
    )


@dataclass
class Counter:
    requests: int = 0
    errors: int = 0
    rejected: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def add(self, n: int, b: Behaviour) -> None:
        self.requests += n
        self.errors += round(n * b.error_share)
        self.rejected += round(n * b.reject_share)
        self.buckets[_bucket(b.latency_ms)] += n

    def counts(self) -> TrafficCounts:
        return TrafficCounts(
            requests=self.requests,
            errors=self.errors,
            rejected=self.rejected,
            latency_ms_buckets=list(self.buckets),
        )


@dataclass
class Behaviour:
    error_share: float = 0.0
    # 4xx answers: input the version refuses
    reject_share: float = 0.0
    latency_ms: float = 4.0
    disagree_share: float = 0.0


class World:
    def __init__(self, resource: ModelDeployment, model: ResolvedModel | None = None) -> None:
        self.resource = resource
        self.model: ResolvedModel | Problem = model or resolved()
        self.now = T0
        self.apps: dict[str, dict[str, Any]] = {}
        # app name -> Ray status; RUNNING unless a test says otherwise
        self.app_status: dict[str, str] = {}
        self.behaviour: dict[str, Behaviour] = {}
        self.live: dict[str, Counter] = {}
        self.shadow: dict[str, Counter] = {}
        self.pairs: dict[str, PairCounts] = {}
        self.recorder_id = "rec-1"
        self.decisions: list[Decision] = []
        self.applies = 0
        self.rps = 20.0
        self._carry: dict[str, float] = {}
        self.config = CONFIG

    # -- what the operator observes
    def serve(self) -> ServeApps:
        router, versions = None, {}
        for name, config in self.apps.items():
            state = ServeState(
                status=self.app_status.get(name, "RUNNING"), deployed_config=config, ready_replicas=1
            )
            if ".v" in name:
                versions[name.rsplit(".v", 1)[1]] = state
            else:
                router = state
        return ServeApps(router=router, versions=versions)

    def traffic(self) -> TrafficStats:
        return TrafficStats(
            recorder_id=self.recorder_id,
            live={v: c.counts() for v, c in self.live.items()},
            shadow={v: c.counts() for v, c in self.shadow.items()},
            pairs=dict(self.pairs),
        )

    def router_config(self) -> RouterConfig | None:
        router = next((c for n, c in self.apps.items() if ".v" not in n), None)
        return (
            None if router is None else RouterConfig.model_validate(router["deployments"][0]["user_config"])
        )

    # -- time passes: requests flow as the router is configured
    def flow(self, seconds: float) -> None:
        config = self.router_config()
        if config is None:
            return
        n_total = int(self.rps * seconds)
        for version, weight in config.weights.items():
            # Fractions carried over: a trickle (0.2 requests a pass) still adds up over many passes.
            share = self._carry.get(version, 0.0) + self.rps * seconds * weight / 100
            n = int(share)
            self._carry[version] = share - n
            if n:
                b = self.behaviour.get(version, Behaviour())
                self.live.setdefault(version, Counter()).add(n, b)
        if config.shadow is not None:
            target = config.shadow.version
            mirrored = sum(n_total * w // 100 for v, w in config.weights.items() if v != target)
            n = mirrored * config.shadow.percent // 100
            if n:
                b = self.behaviour.get(target, Behaviour())
                self.shadow.setdefault(target, Counter()).add(n, b)
                old = self.pairs.get(target, PairCounts())
                self.pairs[target] = PairCounts(
                    compared=old.compared + n, disagreed=old.disagreed + round(n * b.disagree_share)
                )

    # -- one reconcile pass, as the reconciler runs it
    def step(self, seconds: float = 2.0, **observed: Any) -> Decision:
        self.flow(seconds)
        self.now += timedelta(seconds=seconds)
        traffic = self.traffic() if self.resource.status.rollout is not None else None
        obs = Observations(
            model=observed.get("model", self.model),
            serve=observed.get("serve", self.serve()),
            traffic=observed.get("traffic", traffic),
            monitor_jobs=observed.get("monitor_jobs", {}),
            retraining=observed.get("retraining"),
        )
        decision = decide(self.resource, obs, self.config, self.now)
        for action in decision.actions:
            if isinstance(action, ApplyServeApplications):
                self.applies += 1
                for name in action.remove:
                    self.apps.pop(name, None)
                for config in action.app_configs:
                    self.apps[config["name"]] = config
        self.decisions.append(decision)
        # As read back from the API server: the status just written, which reads whole.
        self.resource = self.resource.model_copy(
            update={"status": decision.status, "status_unreadable": None, "status_dropped": ()}
        )
        return decision

    def run(self, seconds: float, tick: float = 2.0) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.step(tick)

    def until(self, predicate: Any, limit_s: float = 600, tick: float = 2.0) -> None:
        end = self.now + timedelta(seconds=limit_s)
        while not predicate(self):
            assert self.now < end, f"not reached in {limit_s}s; status: {self.resource.status.rollout}"
            self.step(tick)

    def change_spec(self, spec: dict[str, Any], model: ResolvedModel | None = None) -> None:
        generation = (self.resource.metadata.generation or 1) + 1
        status = self.resource.status.model_dump(by_alias=True)
        annotations = dict(self.resource.metadata.annotations)
        self.resource = md(spec, status, generation)
        self.resource = self.resource.model_copy(
            update={"metadata": self.resource.metadata.model_copy(update={"annotations": annotations})}
        )
        if model is not None:
            self.model = model

    def annotate(self, key: str, value: str) -> None:
        meta = self.resource.metadata
        self.resource = self.resource.model_copy(
            update={"metadata": meta.model_copy(update={"annotations": {**meta.annotations, key: value}})}
        )

    def restart_operator(self) -> None:
        """A new operator: only what status holds survives (a round trip through JSON, as through the API)."""
        raw = self.resource.model_dump(mode="json", by_alias=True)
        self.resource = ModelDeployment.model_validate(raw)

    # -- what happened
    def drafts(self) -> list[Any]:
        return [a.draft for d in self.decisions for a in d.actions if isinstance(a, RecordAudit)]

    def events(self) -> list[PostEvent]:
        return [a for d in self.decisions for a in d.actions if isinstance(a, PostEvent)]

    @property
    def rollout(self) -> Any:
        return self.resource.status.rollout

    @property
    def stable_version(self) -> str | None:
        stable = self.resource.status.stable
        return None if stable is None else stable.version


def settled(spec: dict[str, Any] | None = None, version: str = "3") -> World:
    """A world where `version` already serves as stable."""
    world = World(md(spec or {"model": {"name": "credit-risk", "version": version}}), resolved(version))
    world.until(lambda w: w.stable_version == version, limit_s=30)
    world.decisions.clear()
    return world

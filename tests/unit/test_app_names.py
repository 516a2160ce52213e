"""Serve application names: one per ModelDeployment across namespaces, and ownership by exact name only."""

from __future__ import annotations

from typing import Any

import pytest
from builders import CONFIG

from steward.adapters.ray_serve import ServeApplication
from steward.api.model_deployment import ModelDeployment
from steward.api.serve_app import app_version, version_app_name
from steward.operator.actions import DeleteServeApplication
from steward.operator.reconciler import Reconciler
from steward.operator.serve_config import app_name
from steward.operator.serve_observation import index_applications, indexed_serve_apps, serve_apps


def resource(namespace: str, name: str) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"name": "fraud", "version": "1"}},
        }
    )


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("team-a", "fraud"), ("team", "a-fraud")),
        (("team", "fraud-v1"), ("team", "fraud")),  # a name ending like a version suffix
        (("a", "b-c-d"), ("a-b", "c-d")),
    ],
)
def test_names_of_different_deployments_differ(one: tuple[str, str], other: tuple[str, str]) -> None:
    a, b = app_name(resource(*one)), app_name(resource(*other))
    assert a != b
    # Nor does one's version application equal the other's router or version application.
    names_a = {a, version_app_name(a, "1")}
    names_b = {b, version_app_name(b, "1")}
    assert not names_a & names_b


def test_names_are_bounded() -> None:
    longest = app_name(resource("n" * 63, "m" * 63))
    assert len(longest) == 127


def test_a_namespace_that_is_no_dns_label_is_refused() -> None:
    with pytest.raises(ValueError, match="namespace"):
        resource("team.a", "fraud")


@pytest.mark.parametrize(
    ("app", "version"),
    [
        ("team-a.fraud.v1", "1"),
        ("team-a.fraud.v12", "12"),
        ("team-a.fraud.v1x", None),
        ("team-a.fraud.v", None),
        ("team-a.fraud.v01", None),
        ("team-a.fraud-x.v2", None),
        ("team-a.fraud", None),
        ("xteam-a.fraud.v1", None),
        ("team.a-fraud.v3", None),
        ("team-a-fraud.v1", None),  # the name an older release gave; ours are exact
    ],
)
def test_version_apps_are_matched_exactly(app: str, version: str | None) -> None:
    assert app_version("team-a.fraud", app) == version


def running(name: str) -> ServeApplication:
    return ServeApplication(name=name, status="RUNNING", message="", deployed_config={})


NEIGHBOURS = ["team-a.fraud.v1x", "team-a.fraud-x", "team-a.fraud-x.v2", "team.a-fraud", "team.a-fraud.v1"]


def test_foreign_apps_are_never_counted_as_ours() -> None:
    apps = {n: running(n) for n in ["team-a.fraud", "team-a.fraud.v1", *NEIGHBOURS]}
    ours = serve_apps(apps, "team-a.fraud")
    assert ours.router is not None
    assert set(ours.versions) == {"1"}


class FakeCluster:
    def __init__(self, names: list[str]) -> None:
        self.apps = {n: running(n) for n in names}

    def applications(self) -> dict[str, ServeApplication]:
        return dict(self.apps)

    def delete_applications(self, names: set[str], http_options: dict[str, Any]) -> int:
        present = names & set(self.apps)
        for name in present:
            del self.apps[name]
        return len(present)

    def close(self) -> None:
        pass


def test_deleting_one_deployment_removes_only_its_own_apps() -> None:
    cluster = FakeCluster(["team-a.fraud", "team-a.fraud.v1", "team-a.fraud.v2", *NEIGHBOURS])
    reconciler = Reconciler(CONFIG, ray_token="t")
    reconciler._serve_clients[CONFIG.ray_address] = cluster  # type: ignore[assignment]
    try:
        problem = reconciler.execute(
            [DeleteServeApplication(CONFIG.ray_address, app_name(resource("team-a", "fraud")))],
            lambda *_: None,
        )
    finally:
        reconciler.close()
    assert problem is None
    assert sorted(cluster.apps) == sorted(NEIGHBOURS)


TRICKY = [
    "team-a.fraud",
    "team-a.fraud.v1",
    "team-a.fraud.v12",
    "team-a.fraud.v01",
    "team-a.fraud.v",
    "team-a.fraud.v1.v2",  # router "team-a.fraud.v1"'s version 2, never "team-a.fraud"'s
    "team-a.fraud.v1x",
    "team-a.fraud.v\u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but no version
    "team-a.fraud.vv1",
    ".v1",
    "v1",
    "team-a.fraud-x.v2",
    *NEIGHBOURS,
]


@pytest.mark.parametrize(
    "router", ["team-a.fraud", "team-a.fraud.v1", "team-a.fraud.v", "team.a-fraud", "", "team-a.fraud-x", "x"]
)
def test_the_index_of_a_list_finds_what_a_scan_of_it_finds(router: str) -> None:
    apps = {n: running(n) for n in TRICKY}
    assert indexed_serve_apps(index_applications(apps), router) == serve_apps(apps, router)


def test_every_version_application_the_index_files_is_one_that_app_version_accepts() -> None:
    apps = {n: running(n) for n in TRICKY}
    index = index_applications(apps)
    filed = {(r, v, name) for r, names in index.versions.items() for v, name in names.items()}
    # Every router an application could belong to: each prefix of its name.
    candidates = {(n[:i], n) for n in TRICKY for i in range(len(n) + 1)}
    expected = {(r, app_version(r, n), n) for r, n in candidates if app_version(r, n) is not None}
    assert filed == expected

"""Which admission requests get the authenticated user stamped, and how records name who acted."""

from __future__ import annotations

import pytest
from builders import md

from steward.operator.admission import stamp
from steward.operator.audit_drafts import actor_of, requester

USER = {"username": "alice@bank.example", "groups": ["system:authenticated"]}


def obj(version: str = "3", **annotations: str) -> dict:
    return {"metadata": {"annotations": annotations}, "spec": {"model": {"name": "m", "version": version}}}


@pytest.mark.parametrize(
    ("operation", "old", "new", "stamped"),
    [
        ("CREATE", None, obj(), True),
        ("UPDATE", obj("3"), obj("4"), True),
        ("UPDATE", obj(), obj(**{"steward.io/rollout-command": '{"id":"c1","command":"pause"}'}), True),
        (
            "UPDATE",
            obj(),
            obj(**{"steward.io/last-handled-configuration": "{}"}),
            False,
        ),  # Kopf's bookkeeping
        ("UPDATE", obj(), obj(), False),
        ("DELETE", obj(), None, False),
        ("CONNECT", obj(), obj(), False),
    ],
)
def test_only_changes_a_person_makes_are_stamped(operation, old, new, stamped):
    result = stamp(operation, USER, old, new)
    assert result == ({"steward.io/authenticated-user": "alice@bank.example"} if stamped else {})


def test_a_missing_username_is_said_so():
    assert stamp("CREATE", {}, None, obj()) == {
        "steward.io/authenticated-user": "unknown (the API server sent no username)"
    }


def with_annotations(**annotations: str):
    resource = md()
    return resource.model_copy(
        update={"metadata": resource.metadata.model_copy(update={"annotations": annotations})}
    )


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, "unknown (no steward.io/actor annotation)"),
        ({"steward.io/actor": "alice"}, "alice"),
        ({"steward.io/authenticated-user": "alice"}, "alice"),
        ({"steward.io/actor": "alice", "steward.io/authenticated-user": "alice"}, "alice"),
        (
            {
                "steward.io/actor": "alice",
                "steward.io/authenticated-user": "system:serviceaccount:ci:deployer",
            },
            "alice (authenticated as system:serviceaccount:ci:deployer)",
        ),
    ],
)
def test_records_name_the_authenticated_user_and_what_the_client_declared(annotations, expected):
    assert requester(with_annotations(**annotations)) == expected


def test_a_rollout_commands_actor_is_checked_against_the_authenticated_user():
    resource = with_annotations(**{"steward.io/authenticated-user": "mallory"})
    assert actor_of(resource, "ops@bank") == "ops@bank (authenticated as mallory)"


def test_a_deletion_is_not_attributed_to_the_last_authenticated_changer():
    from datetime import UTC, datetime

    from steward.operator.audit_drafts import deletion_draft

    resource = with_annotations(**{"steward.io/authenticated-user": "alice", "steward.io/actor": "bob"})
    assert deletion_draft(resource, datetime(2026, 11, 23, tzinfo=UTC), None).actor == "bob"

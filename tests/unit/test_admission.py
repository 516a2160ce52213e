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
        ("UPDATE", obj(), obj(**{"steward.io/retraining-command": '{"id":"c2","command":"approve"}'}), True),
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


STAMP = "steward.io/authenticated-user"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # A metadata-only update cannot plant a name: it is removed ...
        (obj(), obj(**{STAMP: "ceo@bank.example"}), {STAMP: None}),
        # ... nor replace or remove the name of who made the last change: it gets the old value back.
        (obj(**{STAMP: "bob"}), obj(**{STAMP: "ceo@bank.example"}), {STAMP: "bob"}),
        (obj(**{STAMP: "bob"}), obj(), {STAMP: "bob"}),
        # The operator's own writes leave it as it is.
        (obj(**{STAMP: "bob"}), obj(**{STAMP: "bob", "steward.io/last-handled-configuration": "{}"}), {}),
        # A change a person makes is theirs, whatever the request says.
        (obj("3", **{STAMP: "bob"}), obj("4", **{STAMP: "ceo@bank.example"}), {STAMP: "alice@bank.example"}),
    ],
)
def test_every_update_restores_or_overwrites_the_authenticated_user(old, new, expected):
    assert stamp("UPDATE", USER, old, new) == expected


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
        ({"steward.io/actor": "alice"}, "alice (declared)"),
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
    assert deletion_draft(resource, datetime(2026, 11, 23, tzinfo=UTC), None).actor == "bob (declared)"


@pytest.mark.parametrize(
    ("webhook_port", "expected"),
    [(None, "alice (declared)"), (8443, "alice (authenticated as ceo@bank.example)")],
)
def test_without_the_webhook_the_operator_ignores_the_annotation(webhook_port, expected):
    """Anyone who may edit the object can write the annotation: only a webhook that overwrites it on every
    change makes it evidence."""
    from builders import NOTHING, T0, resolved

    from steward.audit.records import AuditAction
    from steward.operator.actions import RecordAudit
    from steward.operator.config import OperatorConfig
    from steward.operator.core import decide
    from steward.operator.observations import Observations

    resource = with_annotations(
        **{"steward.io/actor": "alice", "steward.io/authenticated-user": "ceo@bank.example"}
    )
    config = OperatorConfig(webhook_port=webhook_port)
    decision = decide(resource, Observations(resolved(), NOTHING), config, T0)
    (created,) = [a.draft for a in decision.actions if isinstance(a, RecordAudit)]
    assert created.action == AuditAction.CREATED and created.actor == expected

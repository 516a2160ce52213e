"""Who really changed a ModelDeployment: the user the API server authenticated, stamped at admission (pure).

`steward.io/actor` is what a client says about itself (the steward CLI fills it in); a mutating admission
webhook sees the API server's `userInfo` and records it in `steward.io/authenticated-user`. Only this webhook
may set it, so it rules on every create and update: a change a person makes (a new object, a spec change, a
rollout or retraining command) gets that person's name, replacing whatever the request carried; any other
update (the operator's status and bookkeeping writes, a metadata-only edit) gets the previous value back, so
the person's name stays and nobody can plant one without making the change it would vouch for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steward.api.model_deployment import AUTHENTICATED_USER_ANNOTATION
from steward.api.retraining import COMMAND_ANNOTATIONS


def authenticated_identity(userinfo: Mapping[str, Any]) -> str:
    username = str(userinfo.get("username") or "").strip()
    return username or "unknown (the API server sent no username)"


def _annotations(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def is_human_change(operation: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    if operation == "CREATE":
        return True
    if operation != "UPDATE" or old is None or new is None:
        return False
    changed_spec = (old.get("spec") or {}) != (new.get("spec") or {})
    changed_command = any(_annotations(old).get(a) != _annotations(new).get(a) for a in COMMAND_ANNOTATIONS)
    return changed_spec or changed_command


def stamp(
    operation: str, userinfo: Mapping[str, Any], old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> dict[str, str | None]:
    """The annotations to set on this admission request (None: remove; empty: leave the object alone)."""
    if is_human_change(operation, old, new):
        return {AUTHENTICATED_USER_ANNOTATION: authenticated_identity(userinfo)}
    if operation != "UPDATE":
        return {}
    previous = _annotations(old).get(AUTHENTICATED_USER_ANNOTATION)
    if _annotations(new).get(AUTHENTICATED_USER_ANNOTATION) == previous:
        return {}
    return {AUTHENTICATED_USER_ANNOTATION: None if previous is None else str(previous)}

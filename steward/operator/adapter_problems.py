"""What an adapter's error means to the pure core: a Problem with its reason, temporary or not."""

from __future__ import annotations

from steward.adapters.errors import AdapterError, AddressNotAllowed, Unauthorized, Unreachable
from steward.adapters.mlflow_registry import ModelNotFound, VersionNotFound
from steward.api.conditions import Reason
from steward.operator.observations import Problem


def registry_problem(exc: AdapterError) -> Problem:
    if isinstance(exc, ModelNotFound):
        return Problem(Reason.MODEL_NOT_FOUND, exc.message, temporary=False)
    if isinstance(exc, VersionNotFound):
        reason = Reason.ALIAS_NOT_FOUND if exc.is_alias else Reason.VERSION_NOT_FOUND
        return Problem(reason, exc.message, temporary=False)
    if exc.temporary:
        return Problem(Reason.REGISTRY_UNREACHABLE, exc.message, temporary=True)
    return Problem(Reason.REGISTRY_REJECTED, exc.message, temporary=False)


REGISTRY_REASONS = frozenset(
    {
        Reason.MODEL_NOT_FOUND,
        Reason.ALIAS_NOT_FOUND,
        Reason.VERSION_NOT_FOUND,
        Reason.REGISTRY_UNREACHABLE,
        Reason.REGISTRY_REJECTED,
    }
)


def serve_problem(exc: AdapterError) -> Problem:
    """Only Unreachable means "Ray is gone" (which lets a deletion give up after its wait). A refused token is
    retried until someone fixes it, and never taken for a cluster that went away."""
    if isinstance(exc, Unreachable):
        return Problem(Reason.RAY_UNREACHABLE, exc.message, temporary=True)
    if isinstance(exc, Unauthorized):
        return Problem(Reason.RAY_UNAUTHORIZED, exc.message, temporary=True)
    if isinstance(exc, AddressNotAllowed):
        return Problem(Reason.RAY_ADDRESS_NOT_ALLOWED, exc.message, temporary=False)
    if exc.temporary:
        return Problem(Reason.RAY_CONFLICT, exc.message, temporary=True)
    return Problem(Reason.RAY_REJECTED, exc.message, temporary=False)

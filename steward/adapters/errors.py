"""Errors are classified here, at the boundary: temporary ones are retried, permanent ones are shown."""

from __future__ import annotations


class AdapterError(Exception):
    """A failure talking to an external system. `temporary` decides between retry and report."""

    temporary = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unreachable(AdapterError):
    """Connection refused, timed out, 5xx: the system may answer later."""

    temporary = True


class NotReady(AdapterError):
    """The system answered, but what we need is not there yet (e.g. a version still registering)."""

    temporary = True


class NotFound(AdapterError):
    """The thing named does not exist. Permanent until someone creates it or fixes the name."""


class Rejected(AdapterError):
    """The system refused the request as invalid (4xx): retrying the same request will not help."""


class Unauthorized(Rejected):
    """Missing or wrong credentials: fix the token or Secret."""


class AddressNotAllowed(Rejected):
    """The operator's configuration does not allow this address: nothing is sent to it (not even a token)."""


class Conflict(AdapterError):
    """Writing now would not be safe: another writer holds the cluster, its guard cannot be taken, or what we
    read is not complete enough to write back. It clears when they finish, or when a person fixes it."""

    temporary = True

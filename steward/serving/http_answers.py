"""The router's HTTP edges, apart from its deployment logic: answers, request ids, the read token, paths."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from typing import Any

from ray import serve
from starlette.responses import JSONResponse

from steward.serving.scoring import Answer, ErrorCode, error

VERSION_HEADER = "X-Model-Version"
PAIR_LOG_SIZE = 500
DEFAULT_PAIR_LIMIT = 100


def respond(answer: Answer, request_id: str, version: str | None = None) -> JSONResponse:
    headers = {VERSION_HEADER: version} if version is not None else {}
    body = answer.body
    problem = body.get("error")
    if isinstance(problem, dict):
        # The one thing an error answer says about the failure inside: where to find it in the logs.
        body = {**body, "error": {**problem, "request_id": request_id}}
    if answer.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=answer.status, headers=headers)


def request_id() -> str:
    """Ray's id of the request under way (the caller's X-Request-Id, or the proxy's), which Ray's replica logs
    carry too; a fresh one outside Ray."""
    try:
        rid = serve.context._get_serve_request_context().request_id
    except Exception:  # noqa: BLE001 - a private API: any change in it must cost the id, not the request
        rid = ""
    return rid or uuid.uuid4().hex


def bearer_token_matches(headers: Mapping[str, str], expected: str | None) -> bool:
    if expected is None:
        return False
    scheme, _, token = headers.get("authorization", "").partition(" ")
    # Constant-time: the comparison must not tell a guesser how much of the token was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


# The same answer to every unauthenticated read, whatever the path: it tells nothing about what exists.
READ_REFUSED = error(ErrorCode.UNAUTHORIZED, "predictions are POSTed; reads need the operator's token")


def relative_path(scope: Mapping[str, Any]) -> str:
    """The path below the route prefix. Ray's proxy keeps the full path in `path` and appends the route
    prefix to `root_path` (ray/serve/_private/proxy.py, `set_root_path(root_path + route_prefix)`)."""
    path = str(scope.get("path") or "/")
    root = str(scope.get("root_path") or "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def parse_limit(text: str | None) -> int | Answer:
    if text is None:
        return DEFAULT_PAIR_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = -1
    if not 1 <= limit <= PAIR_LOG_SIZE:
        return error(
            ErrorCode.INVALID_QUERY, f"limit must be an integer from 1 to {PAIR_LOG_SIZE}, got {text!r}"
        )
    return limit

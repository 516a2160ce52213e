"""The router's HTTP edges, apart from its deployment logic: answers, request ids, the read token, paths."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from typing import Any

from ray import serve
from starlette.responses import JSONResponse, Response

from steward.api.monitoring import REQUEST_ID_HEADER
from steward.serving.capture import PROBA_FIELD, sane_request_id
from steward.serving.scoring import Answer, ErrorCode, error

VERSION_HEADER = "X-Model-Version"
PAIR_LOG_SIZE = 500
DEFAULT_PAIR_LIMIT = 100


def respond(answer: Answer, request_id: str, version: str | None = None) -> JSONResponse:
    """The answer with its request id in the body (`requestId`); the router adds the header."""
    headers = {VERSION_HEADER: version} if version is not None else {}
    # The caller joins outcomes (`steward feedback`) on it; internal fields never leave the router.
    body = {k: v for k, v in answer.body.items() if k != PROBA_FIELD}
    body["requestId"] = request_id
    problem = body.get("error")
    if isinstance(problem, dict):
        # The one thing an error answer says about the failure inside: where to find it in the logs.
        body["error"] = {**problem, "request_id": request_id}
    if answer.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=answer.status, headers=headers)


def request_id(headers: Mapping[str, str] | None = None) -> str:
    """One id per request, in the answer's header and body, the router's and the version's logs, and the
    captured record: Ray's id of the request under way (the caller's X-Request-Id, or the proxy's), else the
    caller's header; a fresh uuid4 when neither is 1..128 printable characters."""
    try:
        rid = serve.context._get_serve_request_context().request_id
    except Exception:  # noqa: BLE001 - a private API: any change in it must cost the id, not the request
        rid = ""
    if not rid and headers is not None:
        rid = headers.get(REQUEST_ID_HEADER.lower(), "")
    return sane_request_id(rid) or uuid.uuid4().hex


def with_request_id(response: Response, rid: str, headers: Mapping[str, str]) -> Response:
    """The `X-Request-Id` header, unless Ray's proxy adds the same one: it echoes the id it put in the
    request's headers (ray/serve/_private/http_util.py, RequestIdMiddleware); two would be one too many."""
    if headers.get(REQUEST_ID_HEADER.lower()) != rid:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


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

"""Score one JSON request against an MLflow pyfunc model, in MLflow's own scoring formats.

Parsing and signature enforcement are MLflow's (`infer_and_parse_data`, `PyFuncModel.predict`, or its schema
enforcement where the class probabilities share the pass: steward.serving.probabilities), after a check
of our own that names missing and mistyped columns (steward.serving.signature); this module sorts what can go
wrong into answers a client can act on: the caller's fault (4xx, with a code) or the model's (500), never an
exception that escapes to kill the replica. Answers never carry exception text (it can hold a printed frame of
the input, paths, or the model's internals): that goes to the log, under the request id the router returns.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.pyfunc.scoring_server import SUPPORTED_FORMATS, infer_and_parse_data, predictions_to_json

from steward.serving import probabilities as probabilities_of
from steward.serving.capture import PROBA_FIELD
from steward.serving.signature import column_problems

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 2**20


class ErrorCode(StrEnum):
    MALFORMED_JSON = "MALFORMED_JSON"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    INVALID_INPUT = "INVALID_INPUT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    MODEL_ERROR = "MODEL_ERROR"
    NO_VERSION = "NO_VERSION"
    VERSION_UNAVAILABLE = "VERSION_UNAVAILABLE"
    STATS_UNAVAILABLE = "STATS_UNAVAILABLE"
    NOT_FOUND = "NOT_FOUND"
    INVALID_QUERY = "INVALID_QUERY"
    UNAUTHORIZED = "UNAUTHORIZED"


_HTTP_STATUS = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.UNSUPPORTED_FORMAT: 400,
    ErrorCode.INVALID_INPUT: 422,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.MODEL_ERROR: 500,
    ErrorCode.NO_VERSION: 503,
    ErrorCode.VERSION_UNAVAILABLE: 503,
    ErrorCode.STATS_UNAVAILABLE: 503,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_QUERY: 400,
    ErrorCode.UNAUTHORIZED: 401,
}


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, built where the outcome is known and sent as is by the router."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    # How long the version's model took to answer, timed where it ran (its replica, or the router for an
    # in-router stable); never sent to the caller.
    model_ms: float | None = None

    def judged_ms(self, measured_ms: float) -> float:
        """The latency the rollout analysis judges: the model's own time where there is one, so that a hop
        that one version pays (the canary's) and another does not (an in-router stable) counts against
        neither; what the router measured for an answer it built itself (a version it could not reach)."""
        return measured_ms if self.model_ms is None else self.model_ms


def error(code: ErrorCode, message: str, details: Any = None) -> Answer:
    body: dict[str, Any] = {"code": code.value, "message": message}
    if details is not None:
        body["details"] = details
    return Answer(_HTTP_STATUS[code], {"error": body})


def _too_large(limit: int) -> Answer:
    return error(ErrorCode.PAYLOAD_TOO_LARGE, f"request body exceeds {limit} bytes", {"limit_bytes": limit})


async def read_body(
    chunks: AsyncIterable[bytes], content_length: str | None, limit: int = MAX_BODY_BYTES
) -> bytes | Answer:
    """The body, read no further than `limit`: an oversized body is refused by its Content-Length before a
    byte is read, and otherwise as soon as the bytes received cross the limit (a chunked body has no
    length, and a declared length can lie)."""
    if content_length is not None and content_length.strip().isdigit() and int(content_length) > limit:
        return _too_large(limit)
    received: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return _too_large(limit)
        received.append(chunk)
    return b"".join(received)


def parse_json_body(raw: bytes) -> dict[str, Any] | Answer:
    if len(raw) > MAX_BODY_BYTES:
        return _too_large(MAX_BODY_BYTES)
    try:
        payload = json.loads(raw)
    except UnicodeDecodeError as exc:
        return error(ErrorCode.MALFORMED_JSON, "request body is not UTF-8 text", {"byte": exc.start})
    except json.JSONDecodeError as exc:
        return error(
            ErrorCode.MALFORMED_JSON,
            "request body is not valid JSON",
            {"line": exc.lineno, "column": exc.colno},
        )
    except RecursionError:
        return error(ErrorCode.MALFORMED_JSON, "request body nests too deeply")
    if not isinstance(payload, dict):
        return error(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"expected a JSON object with one of {sorted(SUPPORTED_FORMATS)}, got {_json_type(payload)}",
        )
    return payload


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), "null"
    )


def score(
    model: PyFuncModel, payload: dict[str, Any], request_id: str = "", with_proba: bool = False
) -> Answer:
    """`with_proba`: add the class probabilities under PROBA_FIELD, for the capture record (the router
    strips the field before answering)."""
    formats = sorted(set(payload) & set(SUPPORTED_FORMATS))
    if len(formats) != 1:
        return error(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"the JSON object must hold exactly one of {sorted(SUPPORTED_FORMATS)}",
            {"received_keys": sorted(str(k)[:100] for k in payload)[:50]},
        )
    fmt = formats[0]
    schema = model.metadata.get_input_schema()
    problems = column_problems(schema, fmt, payload[fmt])
    if problems:
        return error(ErrorCode.INVALID_INPUT, "the input does not match the model's signature", problems)
    try:
        data = infer_and_parse_data({fmt: payload[fmt]}, schema)
    except Exception as exc:  # noqa: BLE001 - MLflow and pandas raise anything on odd shapes: the caller's input
        log.info("request %s: %s input could not be parsed: %s: %s", request_id, fmt, type(exc).__name__, exc)
        return error(ErrorCode.INVALID_INPUT, f"the input could not be read as {fmt} for this model")
    try:
        predictions, probabilities = probabilities_of.predict(model, data, with_proba, request_id)
    except MlflowException as exc:
        # Raised by MLflow's schema enforcement before the model runs, for what column_problems does not know.
        log.info("request %s: MLflow refused the input: %s", request_id, exc.message)
        return error(ErrorCode.INVALID_INPUT, "the input does not match the model's signature")
    except Exception:
        log.exception("request %s: the model raised", request_id)
        return error(ErrorCode.MODEL_ERROR, "the model failed on this input")
    try:
        out = io.StringIO()
        predictions_to_json(predictions, out)
        result: dict[str, Any] = json.loads(out.getvalue())
    except Exception:
        log.exception("request %s: the model's predictions cannot be written as JSON", request_id)
        return error(ErrorCode.MODEL_ERROR, "the model returned predictions that cannot be sent as JSON")
    if probabilities is not None:
        result[PROBA_FIELD] = probabilities
    return Answer(200, result)

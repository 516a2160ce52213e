"""Score one JSON request against an MLflow pyfunc model, in MLflow's own scoring formats.

Parsing and signature enforcement are MLflow's (`infer_and_parse_data`, `PyFuncModel.predict`); this module
only sorts what can go wrong into answers a client can act on: the caller's fault (4xx, with a code) or
the model's (500), never an exception that escapes to kill the replica.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.pyfunc.scoring_server import SUPPORTED_FORMATS, infer_and_parse_data, predictions_to_json

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
}


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, built where the outcome is known and sent as is by the router."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


def error(code: ErrorCode, message: str, details: Any = None) -> Answer:
    body: dict[str, Any] = {"code": code.value, "message": message}
    if details is not None:
        body["details"] = details
    return Answer(_HTTP_STATUS[code], {"error": body})


def parse_json_body(raw: bytes) -> dict[str, Any] | Answer:
    if len(raw) > MAX_BODY_BYTES:
        return error(ErrorCode.PAYLOAD_TOO_LARGE, f"request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return error(ErrorCode.MALFORMED_JSON, f"request body is not valid JSON: {exc}")
    if not isinstance(payload, dict):
        return error(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"expected a JSON object with one of {sorted(SUPPORTED_FORMATS)}, got {type(payload).__name__}",
        )
    return payload


def score(model: PyFuncModel, payload: dict[str, Any]) -> Answer:
    formats = sorted(set(payload) & set(SUPPORTED_FORMATS))
    if len(formats) != 1:
        return error(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"the JSON object must hold exactly one of {sorted(SUPPORTED_FORMATS)}",
            {"received_keys": sorted(payload)},
        )
    schema = model.metadata.get_input_schema()
    try:
        data = infer_and_parse_data({formats[0]: payload[formats[0]]}, schema)
    except MlflowException as exc:
        return error(ErrorCode.INVALID_INPUT, "the input could not be parsed", exc.message)
    except Exception as exc:  # noqa: BLE001 - pandas raises anything on odd shapes; it is the caller's input
        return error(ErrorCode.INVALID_INPUT, "the input could not be parsed", str(exc))
    try:
        predictions = model.predict(data)
    except MlflowException as exc:
        # Raised by MLflow's schema enforcement before the model runs: missing column, unsafe cast.
        return error(ErrorCode.INVALID_INPUT, "the input does not match the model's signature", exc.message)
    except Exception as exc:
        log.exception("model raised on a request")
        return error(ErrorCode.MODEL_ERROR, f"the model failed: {type(exc).__name__}: {exc}")
    out = io.StringIO()
    predictions_to_json(predictions, out)
    result: dict[str, Any] = json.loads(out.getvalue())
    return Answer(200, result)

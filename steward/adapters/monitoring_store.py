"""Reads what monitor jobs leave in the monitoring store: `result.json` (a MonitorResult) and report bytes.

The store is one URI from the operator's configuration (`STEWARD_MONITORING_URI`): `s3://bucket/prefix`, or an
absolute local folder (local mode). A result not written yet is None (the job is still running, or failed
before writing); a result that is there but unreadable is `CorruptResult`: the operator shows it and never
takes it for a pass or a breach.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

from steward.adapters.errors import AdapterError, NotFound, Unauthorized, Unreachable
from steward.api.monitor_results import MonitorResult

STORE_URI_ENV = "STEWARD_MONITORING_URI"
# Moto / MinIO: boto3 reads AWS_ENDPOINT_URL_S3 itself; MLflow's variable is honoured too, so one local stack
# setting serves both.
ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL")
# The largest result we read: a MonitorResult is small (<= 200 checks); anything bigger is not one.
MAX_RESULT_BYTES = 1_000_000
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class CorruptResult(AdapterError):
    """The result file is there but is not a MonitorResult: a job bug or a tampered store. Permanent."""


def s3_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return next((env[name] for name in ENDPOINT_ENVS if env.get(name)), None)


def _s3_client(endpoint_url: str | None, timeout_s: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 2, "mode": "standard"}
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


class MonitoringStore:
    """Reads from s3:// URIs with a boto3 client (timeouts set), and from absolute local paths."""

    def __init__(
        self, s3_client: Any = None, endpoint_url: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self._s3 = s3_client
        self.endpoint_url = endpoint_url if endpoint_url is not None else s3_endpoint()
        self.timeout_s = timeout_s

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = _s3_client(self.endpoint_url, self.timeout_s)
        return self._s3

    def read_bytes(self, uri: str, limit: int | None = None) -> bytes | None:
        """The object's bytes, or None when there is none."""
        if uri.startswith("s3://"):
            return self._read_s3(uri, limit)
        path = Path(uri.removeprefix("file://"))
        if not path.is_absolute():
            raise NotFound(f"monitoring store path {uri!r} is neither s3:// nor an absolute local path")
        try:
            with path.open("rb") as handle:
                return handle.read(limit) if limit is not None else handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unreachable(f"cannot read {uri}: {exc}") from exc

    def _read_s3(self, uri: str, limit: int | None) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(uri)
        try:
            extra = {"Range": f"bytes=0-{limit - 1}"} if limit is not None else {}
            body: bytes = self.s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                return None
            if code in _DENIED_CODES:
                raise Unauthorized(
                    f"cannot read {uri}: {code}; grant the operator s3:GetObject on the monitoring store"
                ) from exc
            if code == "NoSuchBucket":
                raise NotFound(f"cannot read {uri}: the bucket does not exist ({STORE_URI_ENV})") from exc
            raise Unreachable(f"cannot read {uri}: {code}: {exc}") from exc
        except BotoCoreError as exc:
            where = f" at {self.endpoint_url}" if self.endpoint_url else ""
            raise Unreachable(f"cannot read {uri}{where}: {exc}") from exc
        return body

    def read_result(self, result_uri: str) -> MonitorResult | None:
        """The job's MonitorResult; None while it has not been written."""
        body = self.read_bytes(result_uri, limit=MAX_RESULT_BYTES + 1)
        if body is None:
            return None
        if len(body) > MAX_RESULT_BYTES:
            raise CorruptResult(f"{result_uri} is over {MAX_RESULT_BYTES} bytes: not a monitor result")
        try:
            return MonitorResult.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise CorruptResult(f"{result_uri} is not a valid monitor result: {problems}") from exc

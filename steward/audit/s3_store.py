"""The S3 audit store: one object per record, written only if absent.

Each record is the object `<prefix>/<namespace>/<name>/<seq, zero-padded>.json`, its body the record's JSON.
`append` is a conditional write (`If-None-Match: *`): S3 stores the object only if no object has that key, so
a sequence number that is already taken answers 412 and becomes `RecordExists`, and two operators racing for
the same position cannot both win. Anything that may pass (endpoint unreachable, timeouts, 5xx, throttling,
a missing bucket, missing permissions) becomes `StoreUnavailable` with a message saying what to check; the
trail keeps such records buffered and tries again.

WORM retention: the conditional write stops Steward from overwriting a record, not someone holding the
bucket's credentials. To make the trail write-once-read-many, turn on S3 Object Lock: create the bucket with
Object Lock enabled (`aws s3api create-bucket --bucket B --object-lock-enabled-for-bucket`; this also turns
on versioning, and cannot be added to most existing buckets without AWS support) and give it a default
retention, e.g. `aws s3api put-object-lock-configuration --bucket B --object-lock-configuration
'{"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2555}}}'`.
In COMPLIANCE mode nobody, not even the bucket owner or the root account, can delete a record's version or
shorten its retention until the N days have passed; an "overwrite" only adds a newer version, and the
original stays readable (and the conditional write refuses it anyway). GOVERNANCE mode is the same except that
principals granted `s3:BypassGovernanceRetention` can override it: use it to try the setup, COMPLIANCE for
the real trail. Object Lock needs a checksum on every PUT, which boto3 >= 1.36 sends by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from steward.audit.records import AuditRecord
from steward.audit.store import RecordExists, StoreUnavailable, parse_record, record_name

# Fail fast when the endpoint is unreachable: the trail buffers and retries on the next reconcile anyway.
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
_EXISTS_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
_PERMISSIONS = "s3:PutObject, s3:GetObject and s3:ListBucket"


class S3Store:
    """Audit records as S3 objects under `<prefix>/<namespace>/<name>/`, never overwritten."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "steward-audit",
        client: Any | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        stripped = prefix.strip("/")
        self.base = f"{stripped}/" if stripped else ""
        self.endpoint_url = endpoint_url
        self.client: Any = (
            client
            if client is not None
            else boto3.client("s3", endpoint_url=endpoint_url, config=_CLIENT_CONFIG)
        )

    def _folder(self, deployment: str) -> str:
        namespace, name = deployment.split("/", 1)
        return f"{self.base}{namespace}/{name}/"

    def key(self, deployment: str, seq: int) -> str:
        return self._folder(deployment) + record_name(seq)

    def deployments(self) -> list[str]:
        found: list[str] = []
        try:
            for namespace in self._subfolders(self.base):
                found.extend(folder[len(self.base) :].rstrip("/") for folder in self._subfolders(namespace))
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("list the audit trails in", exc) from exc
        return sorted(found)

    def _subfolders(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        folders: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            folders.extend(str(p["Prefix"]) for p in page.get("CommonPrefixes", []))
        return folders

    def read(self, deployment: str) -> list[AuditRecord]:
        names = self.record_names(deployment)
        return [parse_record(raw, where, deployment) for where, raw in self.read_raw(deployment, names)]

    def record_names(self, deployment: str, ordered: bool = True) -> list[str]:
        # S3 lists keys in order anyway.
        folder = self._folder(deployment)
        try:
            keys: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/"):
                keys.extend(str(o["Key"]) for o in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(f"read the audit trail {deployment} from", exc) from exc
        return sorted(key[len(folder) :] for key in keys if key.endswith(".json"))

    def read_raw(self, deployment: str, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        folder = self._folder(deployment)
        for name in names:
            key = folder + name
            try:
                body = self._get(key)
            except (BotoCoreError, ClientError) as exc:
                raise self._unavailable(f"read the audit trail {deployment} from", exc) from exc
            if body is not None:
                yield f"s3://{self.bucket}/{key}", body

    def _get(self, key: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                return None  # deleted since the listing: `verify` reports the gap as missing
            raise
        return body

    def append(self, record: AuditRecord) -> None:
        key = self.key(record.deployment.key, record.seq)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=record.model_dump_json().encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if _code(exc) in _EXISTS_CODES or _status(exc) == 412:
                raise RecordExists(f"{record.deployment.key} seq {record.seq} is already stored") from exc
            raise self._unavailable(f"write {key} to", exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(f"write {key} to", exc) from exc

    def _unavailable(self, doing: str, exc: Exception) -> StoreUnavailable:
        where = f"s3://{self.bucket}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        cannot = f"cannot {doing} the audit bucket {where}"
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
            return StoreUnavailable(
                f"{cannot}: endpoint unreachable ({exc}); check the S3 endpoint URL, DNS and network "
                "policies, and that the object store is up"
            )
        if isinstance(exc, NoCredentialsError):
            return StoreUnavailable(
                f"{cannot}: no AWS credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, "
                "or a workload identity (IRSA) for the operator"
            )
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            detail = f"{code} (HTTP {status}): {exc.response.get('Error', {}).get('Message', '')}"
            if code == "NoSuchBucket":
                return StoreUnavailable(
                    f"{cannot}: the bucket does not exist; create it (with Object Lock enabled for WORM "
                    "retention) or fix the configured bucket name"
                )
            if code in {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                return StoreUnavailable(
                    f"{cannot}: {detail}; grant the operator's identity {_PERMISSIONS} on the bucket "
                    "(and check its credentials)"
                )
            if code == "NotImplemented" or status == 501:
                return StoreUnavailable(
                    f"{cannot}: {detail}; the endpoint does not support conditional writes "
                    "(If-None-Match), which the audit trail needs so records are never overwritten"
                )
            if code in _THROTTLE_CODES or (status is not None and status >= 500):
                return StoreUnavailable(
                    f"{cannot}: the object store is failing or throttling, {detail}; check its health "
                    "and request rate limits"
                )
            return StoreUnavailable(f"{cannot}: {detail}")
        return StoreUnavailable(f"{cannot}: {exc}; check the S3 endpoint and the operator's credentials")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: Any) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None

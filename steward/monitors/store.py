"""Bytes in and out of the monitoring store: `s3://bucket/prefix` (boto3) or a local folder.

Monitor jobs read captured windows, outcomes and references here, and write reports and results. Every
problem with the data (missing, unreadable, store unreachable) is a `StoreError`: the job turns it into an
`error` verdict rather than a crash, because a flaky store is a condition to show, not a bug.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

# Moto and MinIO: boto3 reads AWS_ENDPOINT_URL_S3 itself; MLflow's variable serves the same stack.
ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL")
_PARTITION = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/")
_MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


class StoreError(Exception):
    """The data cannot be read or written: missing, unreadable, or the store is unreachable."""


class Missing(StoreError):
    """Nothing is stored under that URI."""


def s3_endpoint() -> str | None:
    return next((os.environ[name] for name in ENDPOINT_ENVS if os.environ.get(name)), None)


@cache
def _s3_client(endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # Bounded: a hung store must end the job with an error verdict, not hold a Ray worker forever.
    config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def s3() -> Any:
    return _s3_client(s3_endpoint())


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def _s3_errors(uri: str, exc: Exception) -> StoreError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            return Missing(f"{uri}: not found ({code})")
        return StoreError(f"{uri}: {code}: {exc}")
    where = f" at {s3_endpoint()}" if s3_endpoint() else ""
    return StoreError(f"{uri}{where}: {exc}")


def read_bytes(uri: str) -> bytes:
    if uri.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(uri)
        try:
            body: bytes = s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise _s3_errors(uri, exc) from exc
        return body
    try:
        return _local(uri).read_bytes()
    except FileNotFoundError as exc:
        raise Missing(f"{uri}: no such file") from exc
    except OSError as exc:
        raise StoreError(f"{uri}: {exc}") from exc


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    if uri.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(uri)
        try:
            s3().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise _s3_errors(uri, exc) from exc
        return
    path = _local(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a reader (the operator polling result.json) never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreError(f"{uri}: {exc}") from exc


def list_keys(prefix_uri: str) -> list[str]:
    """Every file below `prefix_uri` (recursively), as full URIs, sorted; hidden files left out."""
    prefix_uri = prefix_uri.rstrip("/")
    if prefix_uri.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(prefix_uri)
        found: list[str] = []
        try:
            pages = s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{key}/")
            for page in pages:
                found.extend(f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise _s3_errors(prefix_uri, exc) from exc
        return sorted(uri for uri in found if not uri.rsplit("/", 1)[-1].startswith("."))
    root = _local(prefix_uri)
    if not root.is_dir():
        return []
    try:
        return sorted(
            str(path) for path in root.rglob("*") if path.is_file() and not path.name.startswith(".")
        )
    except OSError as exc:
        raise StoreError(f"{prefix_uri}: {exc}") from exc


def partition_date(uri: str) -> date | None:
    match = _PARTITION.search(uri)
    return date.fromisoformat(match.group(1)) if match else None


def partitions_between(keys: Iterable[str], start: datetime | None, end: datetime | None) -> list[str]:
    """Parquet files of `date=` partitions that can hold rows in [start, end): whole days, both ends kept."""
    first = start.date() if start is not None else date.min
    # A row at exactly `end` is outside the window; midnight ends the previous day's partition.
    last = (end - timedelta(microseconds=1)).date() if end is not None else date.max
    chosen = []
    for key in keys:
        day = partition_date(key)
        if day is not None and first <= day <= last and key.endswith(".parquet"):
            chosen.append(key)
    return chosen


def read_parquet(uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(read_bytes(uri)), columns=columns)
    except StoreError:
        raise
    except (OSError, ValueError) as exc:
        # pyarrow's ArrowInvalid is a ValueError: a truncated or foreign file.
        raise StoreError(f"{uri}: not a readable Parquet file: {exc}") from exc


def read_frames(uris: Iterable[str]) -> pd.DataFrame:
    frames = [read_parquet(uri) for uri in uris]
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def read_table(uri: str) -> tuple[pd.DataFrame, str]:
    """A reference table (one Parquet or CSV file, or a folder/prefix of Parquet files) and the sha256 of
    its content: of the file's bytes, or, for several files, of their names and hashes in order."""
    lowered = uri.lower().rstrip("/")
    files = (
        [uri]
        if lowered.endswith((".csv", ".parquet"))
        else [k for k in list_keys(uri) if k.endswith(".parquet")]
    )
    if not files:
        raise Missing(f"{uri}: no Parquet or CSV data there")
    frames: list[pd.DataFrame] = []
    digests: list[str] = []
    for file in files:
        body = read_bytes(file)
        digests.append(hashlib.sha256(body).hexdigest())
        try:
            if file.lower().endswith(".csv"):
                frames.append(pd.read_csv(io.BytesIO(body)))
            else:
                frames.append(pd.read_parquet(io.BytesIO(body)))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{file}: not a readable table: {exc}") from exc
    if len(files) == 1:
        return frames[0], digests[0]
    relative = [file.removeprefix(uri.rstrip("/")) for file in files]
    manifest = "\n".join(f"{name} {digest}" for name, digest in zip(relative, digests, strict=True))
    return pd.concat(frames, ignore_index=True), hashlib.sha256(manifest.encode()).hexdigest()

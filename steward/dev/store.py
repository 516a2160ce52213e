"""The local mode's stand-in for the Kubernetes API: a folder of manifests and a folder of objects.

`manifests/` holds what the user applied (like static pods: a file there is a resource that should exist);
`objects/` holds what the control loop keeps per resource: metadata (uid, generation), status and, while a
removal is pending, the time it was asked for. Writes go through a temp file and a rename, so a reader never
sees half a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from steward.api.model_deployment import API_VERSION, KIND, ModelDeployment, ModelDeploymentStatus


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _file_key(namespace: str, name: str) -> str:
    return f"{namespace}__{name}"


def spec_hash(md: ModelDeployment) -> str:
    canonical = json.dumps(md.spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StoredObject:
    namespace: str
    name: str
    uid: str
    generation: int
    spec_hash: str
    created_at: str
    status: ModelDeploymentStatus
    spec: dict[str, Any]
    deletion_requested_at: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def resource(self) -> ModelDeployment:
        """The object as the operator core sees it, from what was last admitted."""
        return ModelDeployment.model_validate(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "uid": self.uid,
                    "generation": self.generation,
                    "annotations": self.annotations,
                },
                "spec": self.spec,
                "status": self.status.model_dump(by_alias=True),
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "metadata": {
                "namespace": self.namespace,
                "name": self.name,
                "uid": self.uid,
                "generation": self.generation,
                "creationTimestamp": self.created_at,
                "deletionTimestamp": self.deletion_requested_at,
                "annotations": self.annotations,
            },
            "specHash": self.spec_hash,
            "spec": self.spec,
            "status": self.status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StoredObject:
        meta = raw["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta["generation"]),
            spec_hash=raw["specHash"],
            created_at=meta["creationTimestamp"],
            status=ModelDeploymentStatus.model_validate(raw.get("status") or {}),
            spec=raw["spec"],
            deletion_requested_at=meta.get("deletionTimestamp"),
            annotations=dict(meta.get("annotations") or {}),
        )


class LocalStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.manifests = home / "manifests"
        self.objects = home / "objects"
        self.events = home / "events.jsonl"

    # --- what the user asked for -------------------------------------------------------------
    def manifest_path(self, namespace: str, name: str) -> Path:
        return self.manifests / f"{_file_key(namespace, name)}.yaml"

    def apply(self, md: ModelDeployment) -> Path:
        path = self.manifest_path(md.metadata.namespace, md.metadata.name)
        doc = md.model_dump(mode="json", by_alias=True, exclude={"status"}, exclude_none=True)
        doc["metadata"] = {"name": md.metadata.name, "namespace": md.metadata.namespace}
        if md.metadata.annotations:
            doc["metadata"]["annotations"] = dict(md.metadata.annotations)
        _write_atomic(path, yaml.safe_dump(doc, sort_keys=False))
        return path

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes (the CLI and the loop): a read-modify-write must not undo
        what another wrote in between (e.g. the loop's status over the CLI's deletion annotations)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / ".store.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def remove(self, namespace: str, name: str, annotations: dict[str, str] | None = None) -> bool:
        """Take the manifest away; `annotations` (who asked, why) go to the object for its deletion record."""
        path = self.manifests / f"{_file_key(namespace, name)}.yaml"
        with self._locked():
            if not path.exists():
                return False
            existing = self.get(namespace, name)
            if existing is not None and annotations:
                self.put(replace(existing, annotations={**existing.annotations, **annotations}))
            path.unlink()
            return True

    def set_status(self, namespace: str, name: str, status: ModelDeploymentStatus) -> None:
        """Write status onto the object as it is now, keeping whatever else changed since it was read."""
        with self._locked():
            current = self.get(namespace, name)
            if current is not None:
                self.put(replace(current, status=status))

    def annotate(self, namespace: str, name: str, key: str, value: str) -> bool:
        """Add one annotation to the applied manifest, as `kubectl annotate` would; False if there is none.

        The spec is written back unchanged, so the spec hash and the generation stay: the loop admits the new
        annotations without a new generation and the operator sees them the next time it reconciles.
        """
        path = self.manifests / f"{_file_key(namespace, name)}.yaml"
        with self._locked():
            try:
                doc = yaml.safe_load(path.read_text())
            except FileNotFoundError:
                return False
            metadata = doc.setdefault("metadata", {})
            metadata["annotations"] = {**(metadata.get("annotations") or {}), key: value}
            _write_atomic(path, yaml.safe_dump(doc, sort_keys=False))
            return True

    def manifest_paths(self) -> list[Path]:
        return sorted(self.manifests.glob("*.yaml")) if self.manifests.exists() else []

    # --- what the loop keeps -----------------------------------------------------------------
    def _object_path(self, namespace: str, name: str) -> Path:
        return self.objects / f"{_file_key(namespace, name)}.json"

    def get(self, namespace: str, name: str) -> StoredObject | None:
        path = self._object_path(namespace, name)
        if not path.exists():
            return None
        return StoredObject.from_json(json.loads(path.read_text()))

    def all(self) -> list[StoredObject]:
        if not self.objects.exists():
            return []
        return [
            StoredObject.from_json(json.loads(p.read_text())) for p in sorted(self.objects.glob("*.json"))
        ]

    def admit(self, md: ModelDeployment, now: datetime) -> StoredObject:
        """The stored object for a manifest: new, same generation, or the next generation on a spec change."""
        with self._locked():
            return self._admit(md, now)

    def _admit(self, md: ModelDeployment, now: datetime) -> StoredObject:
        existing = self.get(md.metadata.namespace, md.metadata.name)
        digest = spec_hash(md)
        if existing is None:
            obj = StoredObject(
                namespace=md.metadata.namespace,
                name=md.metadata.name,
                uid=str(uuid.uuid4()),
                generation=1,
                spec_hash=digest,
                created_at=now.isoformat(),
                status=ModelDeploymentStatus(),
                spec=md.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                annotations=dict(md.metadata.annotations),
            )
        elif existing.spec_hash != digest or existing.deletion_requested_at:
            obj = replace(
                existing,
                generation=existing.generation + 1,
                spec_hash=digest,
                spec=md.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                deletion_requested_at=None,
                annotations=dict(md.metadata.annotations),
            )
        elif existing.annotations != md.metadata.annotations:
            obj = replace(existing, annotations=dict(md.metadata.annotations))  # no new generation
        else:
            return existing
        self.put(obj)
        return obj

    def put(self, obj: StoredObject) -> None:
        _write_atomic(self._object_path(obj.namespace, obj.name), json.dumps(obj.to_json(), indent=1))

    def forget(self, namespace: str, name: str) -> None:
        self._object_path(namespace, name).unlink(missing_ok=True)

    def post_event(self, namespace: str, name: str, type_: str, reason: str, message: str) -> None:
        self.events.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "time": datetime.now(UTC).isoformat(),
            "object": f"{namespace}/{name}",
            "type": type_,
            "reason": reason,
            "message": message,
        }
        with self.events.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read_events(self, namespace: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        records = [json.loads(line) for line in self.events.read_text().splitlines() if line.strip()]
        if namespace and name:
            records = [r for r in records if r["object"] == f"{namespace}/{name}"]
        return records

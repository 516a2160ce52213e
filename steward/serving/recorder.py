"""The recorder deployment of a router application: one replica that sums every router replica's figures."""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

from ray import serve

from steward.api.serve_app import ShadowLog, ShadowPair
from steward.serving.http_answers import PAIR_LOG_SIZE
from steward.serving.traffic import Counts


@serve.deployment(num_replicas=1)
class Recorder:
    """Sums the measurements of every router replica, so that there is one set of figures to read."""

    def __init__(self) -> None:
        self.recorder_id = str(uuid.uuid4())
        self.totals = Counts()
        self.pairs: deque[ShadowPair] = deque(maxlen=PAIR_LOG_SIZE)

    def record(self, delta: Counts, pairs: list[ShadowPair]) -> None:
        self.totals.add(delta)
        self.pairs.extend(pairs)

    def stats(self) -> dict[str, Any]:
        return self.totals.to_stats(self.recorder_id).model_dump(mode="json")

    def shadow_log(self, limit: int) -> dict[str, Any]:
        recent = list(self.pairs)[-limit:] if limit > 0 else []
        return ShadowLog(recorder_id=self.recorder_id, pairs=recent).model_dump(mode="json")

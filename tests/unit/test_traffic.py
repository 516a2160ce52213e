"""The router's pure decisions: sticky keys, version choice, shadowing, agreement and its counts."""

from __future__ import annotations

import hashlib
import random

import pytest

from steward.api.rollout import Stickiness
from steward.api.serve_app import LATENCY_BUCKETS_MS, ShadowConfig, TrafficStats
from steward.serving.traffic import (
    Counts,
    answers_agree,
    choose_version,
    key_bucket,
    key_from_headers,
    key_from_payload,
    latency_bucket,
    should_shadow,
    sticky_key,
)

# ------------------------------------------------------------------------------------------- sticky keys

ROW = {"customer_id": "c-17", "income": 1.0}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"dataframe_records": [ROW, {"customer_id": "c-99"}]}, "c-17"),
        ({"dataframe_records": [{"income": 1.0}]}, None),
        ({"dataframe_records": []}, None),
        ({"dataframe_records": ["not a record"]}, None),
        (
            {"dataframe_split": {"columns": ["income", "customer_id"], "data": [[1.0, "c-17"], [2.0, "x"]]}},
            "c-17",
        ),
        ({"dataframe_split": {"columns": ["income"], "data": [[1.0]]}}, None),
        ({"dataframe_split": {"columns": ["income", "customer_id"], "data": [[1.0]]}}, None),
        ({"dataframe_split": {"columns": ["customer_id"], "data": ["c-17"]}}, "c-17"),
        ({"dataframe_split": {"columns": ["customer_id"], "data": []}}, None),
        ({"dataframe_split": "garbage"}, None),
        ({"inputs": {"customer_id": ["c-17", "c-2"], "income": [1.0, 2.0]}}, "c-17"),
        ({"inputs": {"customer_id": "c-17"}}, "c-17"),
        ({"inputs": {"customer_id": []}}, None),
        ({"inputs": [ROW]}, "c-17"),
        ({"instances": [ROW]}, "c-17"),
        ({"instances": {"customer_id": ["c-17"]}}, "c-17"),
        ({"instances": [[1.0, 2.0]]}, None),
        ({"rows": [ROW]}, None),
        # Numbers are keys too; 42 and 42.0 are one caller, whatever the client's JSON encoder wrote.
        ({"dataframe_records": [{"customer_id": 42}]}, "42"),
        ({"dataframe_records": [{"customer_id": 42.0}]}, "42"),
        ({"dataframe_records": [{"customer_id": 4.5}]}, "4.5"),
        ({"dataframe_records": [{"customer_id": True}]}, "true"),
        ({"dataframe_records": [{"customer_id": None}]}, None),
        ({"dataframe_records": [{"customer_id": ""}]}, None),
        ({"dataframe_records": [{"customer_id": float("nan")}]}, None),
        ({"dataframe_records": [{"customer_id": {"nested": 1}}]}, None),
    ],
)
def test_key_from_payload(payload, expected):
    assert key_from_payload(payload, "customer_id") == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-customer-id": "abc"}, "abc"),
        ({"X-CUSTOMER-ID": "abc"}, "abc"),
        ({"x-customer-id": "  abc "}, "abc"),
        ({"x-customer-id": ""}, None),
        ({"x-other": "abc"}, None),
        ({}, None),
    ],
)
def test_key_from_headers_ignores_case(headers, expected):
    assert key_from_headers(headers, "X-Customer-Id") == expected


@pytest.mark.parametrize(
    ("stickiness", "expected"),
    [
        (None, None),
        (Stickiness(header="X-Customer-Id"), "from-header"),
        (Stickiness(field="customer_id"), "from-field"),
    ],
)
def test_sticky_key_reads_the_configured_source(stickiness, expected):
    headers = {"x-customer-id": "from-header"}
    payload = {"dataframe_records": [{"customer_id": "from-field"}]}
    assert sticky_key(stickiness, headers, payload) == expected


# ------------------------------------------------------------------------------------------ version choice


def test_key_bucket_is_sha256_not_the_salted_builtin_hash():
    # The value another router replica (another process) computes for the same key.
    for key in ("alice", "bob", "42", "c-17"):
        assert key_bucket(key) == int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100


def test_key_buckets_spread_over_0_to_99():
    buckets = [key_bucket(f"customer-{i}") for i in range(5000)]
    assert min(buckets) == 0
    assert max(buckets) == 99
    # Each bucket expects 50 keys; none should be far off if the hash spreads keys evenly.
    assert all(20 <= buckets.count(b) <= 90 for b in range(100))


@pytest.mark.parametrize(
    ("weights", "rand", "expected"),
    [
        ({"1": 100}, 0.99, "1"),
        ({"1": 100, "2": 0}, 0.0, "1"),
        ({"1": 0, "2": 0}, 0.5, None),
        ({}, 0.5, None),
        ({"1": -5, "2": 0}, 0.5, None),
        # Newest first: version 2 owns [0, 30), version 1 [30, 100).
        ({"1": 70, "2": 30}, 0.0, "2"),
        ({"1": 70, "2": 30}, 0.2999, "2"),
        ({"1": 70, "2": 30}, 0.30, "1"),
        ({"1": 70, "2": 30}, 0.9999, "1"),
        # Versions compare as integers: 10 is newer than 9.
        ({"9": 50, "10": 50}, 0.1, "10"),
        # Weights that do not sum to 100 split in proportion.
        ({"1": 1, "2": 1}, 0.49, "2"),
        ({"1": 1, "2": 1}, 0.51, "1"),
        ({"1": 50, "2": 50}, 1.0, "1"),
    ],
)
def test_choose_version_without_a_key(weights, rand, expected):
    assert choose_version(weights, None, rand) == expected


def test_weighted_random_choice_follows_the_weights():
    rng = random.Random(1)
    chosen = [choose_version({"1": 70, "2": 30}, None, rng.random()) for _ in range(20000)]
    assert chosen.count("2") / len(chosen) == pytest.approx(0.30, abs=0.015)


def test_a_key_ignores_rand_and_always_gets_the_same_version():
    for i in range(200):
        key = f"customer-{i}"
        assert len({choose_version({"1": 50, "2": 50}, key, r) for r in (0.0, 0.3, 0.7, 0.99)}) == 1


def test_a_key_uses_its_bucket():
    # Version 2 (newest) owns buckets [0, 30).
    for i in range(300):
        key = f"k{i}"
        expected = "2" if key_bucket(key) < 30 else "1"
        assert choose_version({"1": 70, "2": 30}, key, 0.5) == expected


@pytest.mark.parametrize("old_version", ["1", "2"])
def test_raising_the_new_weight_never_moves_a_key_back_to_the_old_version(old_version):
    new_version = str(int(old_version) + 5)
    keys = [f"customer-{i}" for i in range(2000)]
    previous: dict[str, str | None] = {}
    for weight in (0, 1, 10, 25, 50, 75, 99, 100):
        now = {k: choose_version({old_version: 100 - weight, new_version: weight}, k, 0.5) for k in keys}
        if weight == 0:
            assert set(now.values()) == {old_version}
        if weight == 100:
            assert set(now.values()) == {new_version}
        on_new = sum(v == new_version for v in now.values()) / len(keys)
        assert on_new == pytest.approx(weight / 100, abs=0.04)
        for key, version in previous.items():
            if version == new_version:
                assert now[key] == new_version, f"{key} moved back to {old_version} at weight {weight}"
        previous = now


# -------------------------------------------------------------------------------------------------- shadow


@pytest.mark.parametrize(
    ("shadow", "chosen", "rand", "expected"),
    [
        (None, "1", 0.0, False),
        (ShadowConfig(version="2", percent=100), "1", 0.999, True),
        (ShadowConfig(version="2", percent=100), "2", 0.0, False),
        (ShadowConfig(version="2", percent=100), None, 0.0, False),
        (ShadowConfig(version="2", percent=0), "1", 0.0, False),
        (ShadowConfig(version="2", percent=25), "1", 0.249, True),
        (ShadowConfig(version="2", percent=25), "1", 0.25, False),
    ],
)
def test_should_shadow(shadow, chosen, rand, expected):
    assert should_shadow(shadow, chosen, rand) is expected


# ----------------------------------------------------------------------------------------------- agreement


@pytest.mark.parametrize(
    ("primary", "shadow", "agree"),
    [
        ([1, 0, 1], [1, 0, 1], True),
        ([1, 0, 1], [1, 1, 1], False),
        ([1, 0], [1, 0, 1], False),
        ([0.5], [0.5 * (1 + 1e-12)], True),
        ([0.5], [0.5 * (1 + 1e-6)], False),
        ([0.0], [1e-300], False),
        ([1], [1.0], True),
        ([True], [1], False),
        ([[0.1, 0.9]], [[0.1, 0.9]], True),
        ([[0.1, 0.9]], [[0.9, 0.1]], False),
        ([{"label": "a", "p": 0.3}], [{"label": "a", "p": 0.3}], True),
        ([{"label": "a", "p": 0.3}], [{"label": "b", "p": 0.3}], False),
        ([{"label": "a"}], [{"label": "a", "p": 0.3}], False),
        (["yes"], ["yes"], True),
        (["1"], [1], False),
        ([None], [None], True),
        ([float("nan")], [float("nan")], True),
    ],
)
def test_answers_agree_on_predictions(primary, shadow, agree):
    assert answers_agree(200, {"predictions": primary}, 200, {"predictions": shadow}) is agree


@pytest.mark.parametrize(
    ("primary_status", "primary_body", "shadow_status", "shadow_body"),
    [
        (200, {"predictions": [1]}, 500, {"error": {"code": "MODEL_ERROR"}}),
        (200, {"predictions": [1]}, 503, {"error": {"code": "VERSION_UNAVAILABLE"}}),
        (200, {"predictions": [1]}, 200, {"something": [1]}),
        (422, {"error": {}}, 422, {"error": {}}),
    ],
)
def test_answers_without_two_predictions_disagree(primary_status, primary_body, shadow_status, shadow_body):
    assert answers_agree(primary_status, primary_body, shadow_status, shadow_body) is False


# -------------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("latency_ms", "bucket"),
    [
        (0.0, 0),
        (0.3, 0),
        (1.0, 0),  # a bound belongs to the bucket it closes
        (1.0001, 1),
        (150.0, LATENCY_BUCKETS_MS.index(150)),
        (151.0, LATENCY_BUCKETS_MS.index(200)),
        (10000.0, len(LATENCY_BUCKETS_MS) - 1),
        (10000.1, len(LATENCY_BUCKETS_MS)),
        (1e9, len(LATENCY_BUCKETS_MS)),
    ],
)
def test_latency_bucket(latency_ms, bucket):
    assert latency_bucket(latency_ms) == bucket


def _buckets(*indices: int) -> list[int]:
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for i in indices:
        counts[i] += 1
    return counts


def test_counts_sort_answers_into_requests_errors_and_rejections():
    counts = Counts()
    for status, latency in [(200, 4.0), (200, 4.0), (422, 1.0), (400, 1.0), (500, 120.0), (503, 20000.0)]:
        counts.observe("1", status, latency)
    counts.observe("2", 500, 4.0, shadow=True)
    counts.compare("2", agree=True)
    counts.compare("2", agree=False)

    stats = counts.to_stats("rec-1")

    live = stats.live["1"]
    assert (live.requests, live.errors, live.rejected) == (6, 2, 2)
    assert live.latency_ms_buckets == _buckets(
        3, 3, 0, 0, LATENCY_BUCKETS_MS.index(150), len(LATENCY_BUCKETS_MS)
    )
    assert set(stats.shadow) == {"2"}
    assert (stats.shadow["2"].requests, stats.shadow["2"].errors) == (1, 1)
    assert "2" not in stats.live
    assert (stats.pairs["2"].compared, stats.pairs["2"].disagreed) == (2, 1)
    assert stats.recorder_id == "rec-1"


def test_merging_deltas_adds_every_figure():
    total = Counts()
    first, second = Counts(), Counts()
    first.observe("1", 200, 4.0)
    first.observe("2", 500, 4.0, shadow=True)
    first.compare("2", agree=False)
    second.observe("1", 500, 40.0)
    second.observe("3", 200, 4.0)
    second.compare("2", agree=True)

    total.add(first)
    total.add(second)
    total.add(Counts())

    stats = total.to_stats("r")
    assert (stats.live["1"].requests, stats.live["1"].errors) == (2, 1)
    assert stats.live["1"].latency_ms_buckets == _buckets(3, LATENCY_BUCKETS_MS.index(50))
    assert stats.live["3"].requests == 1
    assert stats.shadow["2"].errors == 1
    assert (stats.pairs["2"].compared, stats.pairs["2"].disagreed) == (2, 1)
    # The deltas themselves are left as they were: a failed flush puts its delta back.
    assert first.live["1"].requests == 1


def test_empty_counts():
    counts = Counts()
    assert counts.is_empty()
    assert counts.to_stats("r") == TrafficStats(recorder_id="r")
    counts.compare("2", agree=True)
    assert not counts.is_empty()


def test_stats_survive_a_json_round_trip():
    counts = Counts()
    counts.observe("1", 200, 4.0)
    stats = counts.to_stats("r")
    assert TrafficStats.model_validate_json(stats.model_dump_json()) == stats

"""Bridge shards: every message has exactly one owner among n bridges, the same for all of
one asset's topics, and the setting is refused with a precise message when malformed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from config.settings import BridgeSettings, parse_shard
from ingest.contract import TOPIC_PATTERNS, ota_command_topic, remote_command_topic
from ingest.shard import Shard

asset_ids = st.from_regex(r"[A-Za-z0-9._-]{1,48}", fullmatch=True)


@given(asset=asset_ids, count=st.integers(1, 64))
def test_one_share_owns_every_topic_of_an_asset(asset: str, count: int) -> None:
    topics = [p.format(id=asset) for p in TOPIC_PATTERNS.values()]
    topics += [ota_command_topic(asset), remote_command_topic(asset), f"vehicles/{asset}/x/y"]
    owners = {tuple(k for k in range(1, count + 1) if Shard(k, count).owns(t)) for t in topics}
    assert len(owners) == 1
    (owner,) = owners
    assert len(owner) == 1


@given(topic=st.sampled_from(["vehicles", "vehicles/", "chargers/CP-1", "weird"]),
       count=st.integers(2, 16))
def test_a_topic_without_an_asset_belongs_to_the_first_share(topic: str, count: int) -> None:
    assert [k for k in range(1, count + 1) if Shard(k, count).owns(topic)] == [1]


def test_shares_split_a_fleet_roughly_evenly() -> None:
    vins = [f"WVWZZZ1KZ{n:08d}" for n in range(4000)]
    per_share = [sum(Shard(k, 4).owns(f"vehicles/{v}/telemetry") for v in vins)
                 for k in range(1, 5)]
    assert sum(per_share) == 4000
    assert min(per_share) > 900, per_share


@pytest.mark.parametrize(("value", "expected"), [("", (1, 1)), ("1/1", (1, 1)),
                                                 ("2/3", (2, 3)), (" 4/4 ", (4, 4))])
def test_shard_setting_parses(value: str, expected: tuple[int, int]) -> None:
    assert parse_shard(value) == expected


@pytest.mark.parametrize(("value", "says"), [
    ("0/2", "1 <= k <= n"), ("3/2", "1 <= k <= n"), ("1/2000", "<= 1024"),
    ("half", "is not k/n"), ("1/2/3", "is not k/n"), ("-1/2", "is not k/n")])
def test_a_bad_shard_setting_says_what_is_wrong(value: str, says: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNERCARE_BRIDGE_SHARD", value)
    with pytest.raises(ValidationError) as info:
        BridgeSettings()
    assert "OWNERCARE_BRIDGE_SHARD" in str(info.value)
    assert says in str(info.value)


def test_shard_and_shared_group_are_refused_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNERCARE_BRIDGE_SHARD", "1/2")
    monkeypatch.setenv("OWNERCARE_MQTT_SHARED_GROUP", "ownercare")
    with pytest.raises(ValidationError, match="set one of them"):
        BridgeSettings()
    monkeypatch.delenv("OWNERCARE_MQTT_SHARED_GROUP")
    assert BridgeSettings().shard == (1, 2)

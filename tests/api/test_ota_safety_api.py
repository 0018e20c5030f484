"""OTA safety over real HTTP with real keys, on SQLite and PostgreSQL: a rollback release
waits for a second admin key's audited approval before any campaign may use it, and the
refusals cars report reach the API per vehicle and per campaign, with their reason, even
when they name no campaign."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config.settings import ApiSettings
from storage import ota as ota_store
from storage.store import Store
from tests.apikit import Server, headers_for

pytestmark = pytest.mark.integration
ARTIFACT = b"bms firmware 1.0.0"
ROLLBACK = {"version": "1.0.0", "component": "bms", "artifact_url": "https://u.example/b.bin",
            "size": len(ARTIFACT), "sha256": hashlib.sha256(ARTIFACT).hexdigest(),
            "notes": "back to 1.0.0", "rollback": True}
VIN = "WCRAAAAAAAAAA0001"
T0 = 1_760_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'ota.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


@pytest.fixture
def api(store: Store, kafka_url: str, tmp_path: Path) -> Iterator[str]:
    with Server(ApiSettings(state_dir=tmp_path, kafka_url=kafka_url), store) as server:
        yield server.url


def campaign_for(release_id: str) -> dict[str, object]:
    return {"name": "back to 1.0.0", "release_id": release_id, "targets": {"vins": [VIN]}}


def test_a_rollback_release_needs_a_second_admin_key_before_a_campaign(
        api: str, store: Store) -> None:
    requester = headers_for(store, "admin", "alice")
    manager = headers_for(store, "ota_manager", "mallory")
    approver = headers_for(store, "admin", "bob")
    created = httpx.post(f"{api}/ota/releases", json=ROLLBACK, headers=requester)
    assert created.status_code == 201, created.text
    release = created.json()
    approval = release["approval"]
    assert (approval["state"], approval["requested_by"], approval["approved_by"]) == (
        "pending", "alice", None)
    assert approval["requested_wall_ms"] == release["created_wall_ms"]

    refused = httpx.post(f"{api}/ota/campaigns", json=campaign_for(release["id"]),
                         headers=requester)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["detail"] == (
        "release bms 1.0.0 is a rollback release awaiting approval: a second key of role "
        f"admin must approve it (POST /ota/releases/{release['id']}/approve) before a "
        "campaign may use it")

    url = f"{api}/ota/releases/{release['id']}/approve"
    same = httpx.post(url, headers=requester)
    assert same.status_code == 403
    assert same.json()["detail"] == ("the key 'alice' asked for this rollback release; a "
                                     "second admin key must approve it")
    assert httpx.post(url, headers=manager).status_code == 403  # not an admin
    assert httpx.post(url).status_code == 401
    assert httpx.get(f"{api}/ota/releases/{release['id']}",
                     headers=approver).json()["approval"]["state"] == "pending"

    approved = httpx.post(url, headers=approver)
    assert approved.status_code == 200, approved.text
    audit = approved.json()["approval"]
    assert (audit["state"], audit["requested_by"], audit["approved_by"]) == (
        "approved", "alice", "bob")
    assert audit["approved_wall_ms"] >= audit["requested_wall_ms"]
    assert httpx.get(f"{api}/ota/releases", headers=manager).json()["items"] == [
        approved.json()]
    again = httpx.post(url, headers=headers_for(store, "admin", "carol"))
    assert again.status_code == 409
    assert "approved already, by 'bob'" in again.json()["detail"]

    allowed = httpx.post(f"{api}/ota/campaigns", json=campaign_for(release["id"]),
                         headers=manager)
    assert allowed.status_code == 201, allowed.text


def test_only_rollback_releases_are_approved(api: str, store: Store) -> None:
    admin = headers_for(store, "admin")
    plain = httpx.post(f"{api}/ota/releases", json={**ROLLBACK, "rollback": False},
                       headers=headers_for(store, "ota_manager")).json()
    assert plain["approval"] is None
    answer = httpx.post(f"{api}/ota/releases/{plain['id']}/approve", headers=admin)
    assert answer.status_code == 409
    assert "is not a rollback release" in answer.json()["detail"]
    unknown = "00000000-0000-4000-8000-000000000000"
    assert httpx.post(f"{api}/ota/releases/{unknown}/approve",
                      headers=admin).status_code == 404
    assert httpx.post(f"{api}/ota/releases/nope/approve", headers=admin).status_code == 404


def test_a_rollback_from_the_command_line_is_approved_by_any_admin_key(
        api: str, store: Store) -> None:
    # `ownercare ota release --rollback` stores it without an API key: no key asked, so any
    # admin key may approve, and starting a campaign before that is refused by the store too.
    from ota.model import Release

    row = ota_store.create_release(store, Release(**ROLLBACK), created_by="cli:ops",
                                   now_ms=T0)
    assert ota_store.rollback_pending(row)
    cid = httpx.post(f"{api}/ota/campaigns", json=campaign_for(row["id"]),
                     headers=headers_for(store, "admin"))
    assert cid.status_code == 409
    approved = httpx.post(f"{api}/ota/releases/{row['id']}/approve",
                          headers=headers_for(store, "admin", "bob")).json()
    assert approved["approval"]["requested_by"] == "cli:ops"
    assert approved["approval"]["approved_by"] == "bob"


def refusal(ts: int, seq: int, detail: str, **named: str) -> dict[str, object]:
    return {"kind": "vehicle_ota_status", "id": VIN, "ts": ts, "seq": seq,
            "data": {"status": "rejected", "detail": detail, **named}}


def test_refusals_reach_the_vehicle_and_the_campaign_with_their_reason(
        api: str, store: Store) -> None:
    viewer = headers_for(store, "viewer")
    manager = headers_for(store, "ota_manager")
    release = httpx.post(f"{api}/ota/releases", json={**ROLLBACK, "rollback": False,
                                                      "version": "2.0.0"},
                         headers=manager).json()
    cid = httpx.post(f"{api}/ota/campaigns", json=campaign_for(release["id"]),
                     headers=manager).json()["id"]
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0, T0)])
    assert httpx.post(f"{api}/ota/campaigns/{cid}/start", headers=manager).status_code == 200
    forged = refusal(T0 + 10, 7, "bad_signature: the manifest is not signed by the pinned "
                     f"key (or was changed after signing) (claimed campaign '{cid}' "
                     "attempt 1)")
    ota_store.apply_reports(store, [forged, forged])  # redelivered: stored once
    ota_store.apply_reports(store, [refusal(T0 + 20, 8, "the car said no",
                                            action_id=f"{cid}:1")])

    record = httpx.get(f"{api}/vehicles/{VIN}/ota", headers=viewer)
    assert record.status_code == 200, record.text
    body = record.json()
    assert [a["campaign_id"] for a in body["actions"]] == [cid]
    assert [(r["ts_event_ms"], r["reason"], r["campaign_id"], r["claimed_campaign_id"])
            for r in body["refusals"]] == [(T0 + 20, "unspecified", cid, None),
                                           (T0 + 10, "bad_signature", None, cid)]
    assert body["refusals"][1]["detail"].startswith("bad_signature: the manifest")
    limited = httpx.get(f"{api}/vehicles/{VIN}/ota?limit=1", headers=viewer).json()
    assert [r["ts_event_ms"] for r in limited["refusals"]] == [T0 + 20]
    assert httpx.get(f"{api}/vehicles/nope/ota", headers=viewer).status_code == 422

    (car,) = httpx.get(f"{api}/ota/campaigns/{cid}/vehicles", headers=viewer).json()
    assert (car["vin"], car["refusal"]["reason"], car["refusal"]["ts_event_ms"]) == (
        VIN, "unspecified", T0 + 20)
    ota_store.apply_reports(store, [refusal(T0 + 30, 9, "bad_signature: again "
                                            f"(claimed campaign '{cid}' attempt 2)")])
    (car,) = httpx.get(f"{api}/ota/campaigns/{cid}/vehicles", headers=viewer).json()
    assert (car["refusal"]["reason"], car["refusal"]["campaign_id"]) == ("bad_signature", None)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert httpx.get(f"{api}/ota/campaigns/{unknown}/vehicles",
                     headers=viewer).status_code == 404

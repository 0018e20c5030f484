"""The OTA safety records in the store (``storage.ota``, ``storage.ota_refusals``), on SQLite
and PostgreSQL: refusals kept per vehicle (bounded, idempotent, with or without a campaign)
and rollback approvals audited once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ota.model import Release
from storage import ota as ota_store
from storage import ota_refusals as refusal_store
from storage.store import Store

VIN = "WCRAAAAAAAAAA0001"
OTHER = "WCRAAAAAAAAAA0002"
T0 = 1_760_000_000_000
ROLLBACK = Release("1.0.0", "bms", "https://u.example/b.bin", 10, "ab" * 32, rollback=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'ota.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


def rejected(vin: str, ts: int, seq: int | None, detail: str | None = None,
             **named: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"status": "rejected", **named}
    if detail is not None:
        data["detail"] = detail
    return {"kind": "vehicle_ota_status", "id": vin, "ts": ts, "seq": seq, "data": data}


def test_refusals_are_kept_per_vehicle_newest_first_and_bounded(store: Store) -> None:
    kept = refusal_store.REFUSALS_KEPT
    records = [rejected(VIN, T0 + i, i, "expired: too late", action_id=f"c{i}:1")
               for i in range(kept + 5)]
    records.append(rejected(OTHER, T0, None, "bad_signature: forged"))
    assert refusal_store.record_refusals(store, records) == kept + 6
    assert refusal_store.record_refusals(store, records[-3:]) == 0  # redelivered
    listed = refusal_store.vehicle_refusals(store, VIN, limit=kept + 10)
    assert [r["ts_event_ms"] for r in listed] == [T0 + i for i in
                                                  reversed(range(5, kept + 5))]
    assert (listed[0]["reason"], listed[0]["campaign_id"], listed[0]["attempt"]) == (
        "expired", f"c{kept + 4}", 1)
    (other,) = refusal_store.vehicle_refusals(store, OTHER)
    assert (other["reason"], other["campaign_id"]) == ("bad_signature", None)


def test_other_reports_are_no_refusals(store: Store) -> None:
    assert refusal_store.record_refusals(store, [
        {"kind": "vehicle_ota_status", "id": VIN, "ts": T0, "seq": 1,
         "data": {"status": "succeeded", "action_id": "c:1"}}]) == 0
    assert refusal_store.vehicle_refusals(store, VIN) == []


def test_a_rollback_is_approved_once_by_another_key(store: Store) -> None:
    row = ota_store.create_release(store, ROLLBACK, created_by="alice", now_ms=T0,
                                   key_id="k1")
    assert ota_store.rollback_pending(row)
    with pytest.raises(ota_store.SameKey):
        ota_store.approve_rollback(store, row["id"], approved_by="alice again", key_id="k1",
                                   now_ms=T0 + 1)
    approved = ota_store.approve_rollback(store, row["id"], approved_by="bob", key_id="k2",
                                          now_ms=T0 + 2)
    assert approved["approval"] == {"state": "approved", "requested_by": "alice",
                                    "requested_wall_ms": T0, "approved_by": "bob",
                                    "approved_wall_ms": T0 + 2}
    assert not ota_store.rollback_pending(approved)
    with pytest.raises(ota_store.Conflict, match="approved already"):
        ota_store.approve_rollback(store, row["id"], approved_by="carol", key_id="k3",
                                   now_ms=T0 + 3)
    with pytest.raises(KeyError):
        ota_store.approve_rollback(store, "00000000-0000-4000-8000-000000000000",
                                   approved_by="bob", key_id="k2", now_ms=T0)


@given(detail=st.one_of(st.none(), st.text(max_size=80)),
       named=st.dictionaries(st.sampled_from(["campaign_id", "action_id"]),
                             st.text(min_size=1, max_size=64), max_size=2),
       status=st.sampled_from(["rejected", "accepted", "failed"]))
def test_any_report_maps_to_a_refusal_row_or_none(detail: str | None, named: dict[str, str],
                                                  status: str) -> None:
    record = rejected(VIN, T0, 3, detail, **named)
    record["data"]["status"] = status
    row = refusal_store.refusal_row(record)
    if status != "rejected":
        assert row is None
        return
    assert row is not None
    assert row["reason"] == "unspecified" or refusal_store.REASON_RE.fullmatch(row["reason"])
    assert row["detail"] == (detail or "")
    assert (row["campaign_id"] is None) or (row["claimed_campaign_id"] is None)
    if detail and ":" in detail:
        code = detail.split(":", 1)[0].strip()
        assert row["reason"] == (code if refusal_store.REASON_RE.fullmatch(code)
                                 else "unspecified")

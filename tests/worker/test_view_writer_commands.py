"""The view writer folds the cars' answers to remote commands into the store."""

from __future__ import annotations

from pathlib import Path

from diagnostics.daily import DailyIndicators
from ingest import topics
from ingest.contract import encode_batch
from storage import commands as command_store
from storage.store import Store
from worker.view_writer import ViewBatch

VIN = "WCRAAAAAAAAAAAAA1"
T0 = 1_767_225_600_000


def test_command_results_in_a_vehicle_batch_reach_the_command(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0, T0)])
    command_store.request_command(store, vin=VIN, kind="wake", actor="ann", key_id="k",
                                  command_id="w-1")
    command_store.mark_sent(store, ["w-1"])
    batch = ViewBatch(DailyIndicators())
    batch.add(topics.VEHICLES, encode_batch([
        {"kind": "vehicle_telemetry", "id": VIN, "ts": T0 + 1, "seq": 1,
         "data": {"signals": {"Vehicle.Speed": 0.0}}},
        {"kind": "vehicle_command_result", "id": VIN, "ts": T0 + 2, "seq": 2,
         "data": {"command_id": "w-1", "status": "acknowledged", "kind": "wake"}},
        {"kind": "vehicle_command_result", "id": VIN, "ts": T0 + 2, "seq": 3,
         "data": {"command_id": "w-1", "status": "succeeded", "kind": "wake",
                  "result": {"awake_since": T0 + 2}}},
    ]))
    batch.write(store)
    got = command_store.get_command(store, "w-1")
    assert got is not None
    assert got["state"] == "succeeded"
    assert got["result"] == {"awake_since": T0 + 2}
    assert [(e["state"], e["actor"], e["at_event_ms"]) for e in got["events"]][-2:] == [
        ("acknowledged", "vehicle", T0 + 2), ("succeeded", "vehicle", T0 + 2)]

"""A small fleet for the console's tests, written the way the running service writes it:
latest signals and daily indicators as the worker's view writer does, alerts through
``Store.upsert_alert`` as the worker's alert sink does (which files them into cases)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from diagnostics.daily import RESTING_12V, utc_day
from storage import views
from storage.store import Store

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
NOW = T0 + 40 * DAY
VINS = [f"WCRAAAAAAAAAA{i:04d}" for i in range(6)]
CHARGER = "CP-0001"
# How long before NOW each severity's alert was first seen: every case is inside its SLA
# (4 h, 24 h, 72 h) and the critical one is due first.
AGE_MS = {"critical": 3_600_000, "warning": 10 * 3_600_000, "info": 30 * 3_600_000}
ARTIFACT = b"bms firmware 2.0.0"
RELEASE = {"version": "2.0.0", "component": "bms", "artifact_url": "https://u.example/b.bin",
           "size": len(ARTIFACT), "sha256": hashlib.sha256(ARTIFACT).hexdigest(),
           "notes": "cell balancing"}


def battery_alert(vin: str, n: int, *, severity: str = "warning",
                  last_seen: int = NOW) -> dict[str, Any]:
    """A weak-12V alert as the worker's detector emits it (the Kafka record)."""
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}", "asset_kind": "vehicle", "asset_id": vin,
        "type": "weak_12v_battery", "severity": severity, "status": "open",
        "first_seen": last_seen - AGE_MS[severity], "last_seen": last_seen,
        "title": "12 V battery weakening: resting voltage 12.31 V, falling 31 mV/day",
        "evidence": {"latest_v25": 12.31, "failure_v25": 11.9, "warn_v25": 12.2,
                     "slope_v_per_day": -0.031, "samples": 38,
                     "predicted_failure_ts": NOW + 13 * DAY},
        "predicted_failure_ts": NOW + 13 * DAY,
        "recommended_action": "Call the owner: offer a 12 V battery test at the next visit.",
        "detector": "battery12v", "detector_version": "1.2.0",
    }


def seed(store: Store) -> None:
    """Six cars and a charger reporting, 40 days of a falling 12 V resting voltage on each,
    one open alert (and so one case) on each of the first three cars."""
    rows: list[tuple[str, str, str, object, int]] = []
    for vin in VINS:
        rows += [("vehicle", vin, "Vehicle.VehicleIdentification.Model", "Volt", NOW),
                 ("vehicle", vin, "Vehicle.LowVoltageBattery.CurrentVoltage", 12.4, NOW),
                 ("vehicle", vin, "Vehicle.Speed", 0.0, NOW - 3_600_000),
                 ("vehicle", vin, "Vehicle.LowVoltageSystemState", "OFF", NOW),
                 ("vehicle", vin, "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
                  80.0, NOW)]
    rows += [("charger", CHARGER, "OCPP.Connector1.Status", "Available", NOW),
             ("charger", CHARGER, "OCPP.Connector1.ErrorCode", "NoError", NOW)]
    store.upsert_signals(rows)
    indicators = []
    for vin in VINS:
        for d in range(40):
            day = T0 + d * DAY
            v = 12.65 - 0.008 * d
            indicators.append(("vehicle", vin, utc_day(day), RESTING_12V, 4, v - 0.02,
                               v + 0.02, 4 * v, v, day + 3_600_000))
    views.upsert_daily_indicators(store, indicators)
    for i, vin in enumerate(VINS[:3]):
        store.upsert_alert(battery_alert(vin, i + 1, severity=("critical", "warning", "info")[i]))


def ota_campaign(api: str, manager: dict[str, str]) -> str:
    """A release and a running two-wave campaign on the seeded cars, through the REST API;
    its id."""
    release = httpx.post(f"{api}/ota/releases", json=RELEASE, headers=manager)
    assert release.status_code == 201, release.text
    created = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        "name": "bms 2.0", "release_id": release.json()["id"],
        "targets": {"models": ["Volt"]},
        "waves": [{"percent": 50, "success_threshold": 0.5}, {"percent": 100}], "soak_s": 0})
    assert created.status_code == 201, created.text
    cid: str = created.json()["id"]
    started = httpx.post(f"{api}/ota/campaigns/{cid}/start", headers=manager)
    assert started.status_code == 200, started.text
    assert started.json()["state"] == "running"
    return cid

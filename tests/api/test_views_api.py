"""Vehicle list and health card, chargers, fleet overview: over real HTTP (uvicorn + httpx)
on SQLite and a real PostgreSQL, with their auth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import ApiSettings
from diagnostics.daily import DailyIndicators
from storage.keys import KeyStore
from storage.store import Store
from storage.views import encode_key_cursor, track_charging_sessions, upsert_daily_indicators
from tests.apikit import Server, headers_for
from tests.diagnostics.test_charging import Charger, normal_session
from tests.storage.test_store import alert
from tests.storage.test_views_store import FL, MODEL, T0, VIN, VIN2, VIN3, tele
from vocab.eventtime import DAY_MS

pytestmark = pytest.mark.integration

ENDPOINTS = ("/vehicles", f"/vehicles/{VIN}", "/chargers", "/chargers/CP-0001", "/fleet")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'views.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Iterator[str]:
    settings = ApiSettings(state_dir=tmp_path, api_page_max=100)
    with Server(settings, store) as server:
        yield server.url


@pytest.fixture
def http(store: Store) -> Iterator[httpx.Client]:
    with httpx.Client(headers=headers_for(store, "viewer"), timeout=10) as client:
        yield client


def seed(store: Store) -> None:
    store.upsert_signals([
        ("vehicle", VIN, MODEL, "Model Y", T0 + 2 * DAY_MS),
        ("vehicle", VIN2, MODEL, "Model 3", T0), ("vehicle", VIN3, FL, 250.0, T0),
        ("charger", "CP-0001", "OCPP.Connector1.Status", "Faulted", T0 + 3),
        ("charger", "CP-0001", "OCPP.Connector1.ErrorCode", "GroundFailure", T0 + 3),
        ("charger", "CP-0002", "OCPP.Connector1.Status", "Available", T0 + 4),
    ])
    store.upsert_alert(alert(id="a1", asset_id=VIN, severity="critical"))
    store.upsert_alert(alert(id="c1", asset_kind="charger", asset_id="CP-0001",
                             type="charger_faulted", severity="warning"))
    daily = DailyIndicators()
    daily.add([tele(T0 + d * DAY_MS + 5, **{FL: 240.0 + d}) for d in range(3)])
    upsert_daily_indicators(store, daily.drain())
    bad = Charger("CP-0001")
    track_charging_sessions(store, [bad.status(T0, "Preparing"),
                                    bad.meter(T0 + 1, 0.0, 1.0, tx=1, vin=VIN),
                                    bad.status(T0 + 2, "Faulted", "GroundFailure")])
    track_charging_sessions(store, normal_session(Charger("CP-0002"), T0 + DAY_MS, vin=VIN))


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def test_every_view_needs_a_valid_key_and_any_role_may_read(api: str, store: Store) -> None:
    """401 without a key, with an unknown key and with a revoked key. Every role holds the
    read permission (viewer is the weakest role), so no key is too weak for these: 403
    cannot happen here, and each role gets its answer."""
    seed(store)
    keys = KeyStore(store)
    row, revoked = keys.create("gone", "viewer")
    keys.revoke(row["id"])
    for path in ENDPOINTS:
        assert problem(httpx.get(api + path), 401)
        assert problem(httpx.get(api + path, headers={"Authorization": "Bearer oc_nope"}), 401)
        assert problem(httpx.get(api + path, headers={"Authorization": f"Bearer {revoked}"}),
                       401)
        for role in ("viewer", "agent", "ota_manager", "admin"):
            resp = httpx.get(api + path, headers=headers_for(store, role))
            assert resp.status_code == 200, (path, role, resp.text)


def test_vehicle_list(api: str, store: Store, http: httpx.Client) -> None:
    seed(store)
    page = http.get(f"{api}/vehicles", params={"limit": 2}).json()
    assert [v["vin"] for v in page["items"]] == [VIN, VIN2]
    assert page["items"][0] == {"vin": VIN, "model": "Model Y",
                                "first_seen_event_ms": T0 + 2 * DAY_MS,
                                "last_seen_event_ms": T0 + 2 * DAY_MS, "open_alerts": 1,
                                "worst_severity": "critical"}
    rest = http.get(f"{api}/vehicles", params={"limit": 2, "cursor": page["next_cursor"]})
    assert [v["vin"] for v in rest.json()["items"]] == [VIN3]
    assert rest.json()["next_cursor"] is None
    found = http.get(f"{api}/vehicles", params={"vin_prefix": "XYZ"}).json()["items"]
    assert [v["vin"] for v in found] == [VIN3]
    found = http.get(f"{api}/vehicles", params={"model": "Model 3"}).json()["items"]
    assert [v["vin"] for v in found] == [VIN2]


@pytest.mark.parametrize(("params", "field"), [
    ({"vin_prefix": "WC%"}, "vin_prefix"), ({"vin_prefix": "wcr"}, "vin_prefix"),
    ({"vin_prefix": ""}, "vin_prefix"), ({"model": "x" * 65}, "model"),
    ({"model": "Model\x00Y"}, "model"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
    ({"cursor": "garbage"}, "cursor"),
    ({"cursor": encode_key_cursor("WCR\x00")}, "cursor"),  # PostgreSQL refuses NUL: no 500
])
def test_vehicle_list_rejects_bad_input(api: str, http: httpx.Client, params: dict[str, Any],
                                        field: str) -> None:
    body = problem(http.get(f"{api}/vehicles", params=params), 422)
    assert body["errors"][0]["loc"] == ["query", field]


LONG_PATH = "Vehicle.Powertrain.TractionBattery.Charging.MaximumChargingCurrent.Phase1"


def test_every_numeric_signal_has_its_latest_value_and_daily_trend(
        api: str, store: Store, http: httpx.Client) -> None:
    """Not only the named indicators: any VSS path a car reports (here one longer than the
    old 64-character indicator column, and a private one) is in the card."""
    records = [tele(T0 + d * DAY_MS, **{LONG_PATH: 16.0 + d, "Vehicle.Acme.HeatPump.Cop": 3.0})
               for d in range(2)]
    daily = DailyIndicators()
    daily.add(records)
    upsert_daily_indicators(store, daily.drain())
    store.upsert_signals([("vehicle", VIN, LONG_PATH, 17.0, T0 + DAY_MS),
                          ("vehicle", VIN, "Vehicle.Acme.HeatPump.Cop", 3.0, T0 + DAY_MS)])
    card = http.get(f"{api}/vehicles/{VIN}").json()
    assert [(p["day"], p["mean"]) for p in card["trends"][LONG_PATH]] == [
        ("2026-01-01", 16.0), ("2026-01-02", 17.0)]
    assert [p["n"] for p in card["trends"]["Vehicle.Acme.HeatPump.Cop"]] == [1, 1]
    latest = {s["path"]: s["value"] for s in card["signals"]}
    assert latest[LONG_PATH] == 17.0
    assert latest["Vehicle.Acme.HeatPump.Cop"] == 3.0


def test_vehicle_health_card_has_daily_trends(api: str, store: Store, http: httpx.Client
                                              ) -> None:
    seed(store)
    card = http.get(f"{api}/vehicles/{VIN}").json()
    points = card["trends"]["tire_pressure_row1_left_kpa"]
    assert [p["day"] for p in points] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert points[2] == {"day": "2026-01-03", "n": 1, "min": 242.0, "max": 242.0,
                         "mean": 242.0, "last": 242.0}
    assert card["ota"] is None
    # The open alert opened the vehicle's care case.
    assert [(c["asset_id"], c["state"], c["severity"]) for c in card["open_cases"]] == [
        (VIN, "new", "critical")]
    assert [a["id"] for a in card["open_alerts"]] == ["a1"]
    short = http.get(f"{api}/vehicles/{VIN}", params={"days": 1}).json()
    assert [p["day"] for p in short["trends"]["tire_pressure_row1_left_kpa"]] == ["2026-01-03"]
    assert problem(http.get(f"{api}/vehicles/{VIN}", params={"days": 0}), 422)["errors"][0][
        "loc"] == ["query", "days"]
    assert problem(http.get(f"{api}/vehicles/{VIN}", params={"days": 367}), 422)
    assert problem(http.get(f"{api}/vehicles/WCRAAAAAAAAAAAAA9"), 404)


def test_chargers(api: str, store: Store, http: httpx.Client) -> None:
    seed(store)
    page = http.get(f"{api}/chargers").json()
    assert [c["charger_id"] for c in page["items"]] == ["CP-0001", "CP-0002"]
    first = page["items"][0]
    assert first["connectors"] == [{"connector": 1, "status": "Faulted",
                                    "error_code": "GroundFailure", "ts_event_ms": T0 + 3}]
    assert (first["open_alerts"], first["worst_severity"]) == (1, "warning")
    one = http.get(f"{api}/chargers", params={"limit": 1}).json()
    assert [c["charger_id"] for c in http.get(f"{api}/chargers", params={
        "cursor": one["next_cursor"]}).json()["items"]] == ["CP-0002"]

    detail = http.get(f"{api}/chargers/CP-0001").json()
    assert [a["id"] for a in detail["open_alerts"]] == ["c1"]
    (session,) = detail["recent_sessions"]
    assert (session["end_status"], session["error_code"], session["abnormal"],
            session["vin"]) == ("Faulted", "GroundFailure", True, VIN)
    assert session["session_id"] == f"CP-0001:1:{session['start_event_ms']}"
    assert session["end_event_ms"] > session["start_event_ms"]
    assert detail["faults"] == [session]
    share = detail["attributed_fault_share"]
    # The car charged normally at CP-0002 a day later: the failure is this charger's.
    assert (share["abnormal_sessions"], share["judged_sessions"], share["attributed_sessions"],
            share["share"]) == (1, 1, 1, 1.0)
    assert "7 days" in share["rule"]
    normal = http.get(f"{api}/chargers/CP-0002").json()
    assert normal["attributed_fault_share"]["share"] is None
    assert normal["recent_sessions"][0]["energy_wh"] == 3000.0
    assert problem(http.get(f"{api}/chargers/CP-9999"), 404)
    for bad in ("x" * 49, "CP%000001", "CP 1"):
        body = problem(http.get(f"{api}/chargers/{bad}"), 422)
        assert body["errors"][0]["loc"] == ["path", "charger_id"]
    assert problem(http.get(f"{api}/chargers", params={"cursor": "bad"}), 422)


def test_fleet_overview(api: str, store: Store, http: httpx.Client) -> None:
    seed(store)
    overview = http.get(f"{api}/fleet").json()
    assert (overview["vehicles"], overview["chargers"], overview["open_alerts"]) == (3, 2, 2)
    assert overview["fleet_now_event_ms"] is not None
    assert overview["open_alerts_by_type"] == [
        {"type": "charger_faulted", "severity": "warning", "count": 1},
        {"type": "weak_12v_battery", "severity": "critical", "count": 1}]
    assert overview["top_faulty_chargers"][0] == {
        "charger_id": "CP-0001", "sessions": 1, "abnormal_sessions": 1, "open_alerts": 1}
    # Each open alert (vehicle a1, charger c1) opened a case. Both alerts date from epoch
    # ms 1000 while the fleet reports from 2026: both cases are long past due.
    assert overview["cases_by_state"] == {
        "new": 2, "acknowledged": 0, "owner_contacted": 0, "service_booked": 0, "resolved": 0,
        "false_positive": 0, "no_action_needed": 0}
    assert overview["overdue_cases"] == 2
    assert http.get(f"{api}/fleet", params={"top": 1}).json()["top_faulty_chargers"] == \
        overview["top_faulty_chargers"][:1]
    assert problem(http.get(f"{api}/fleet", params={"top": 0}), 422)

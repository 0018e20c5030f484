"""OTA over real HTTP with real keys, on SQLite and PostgreSQL: releases, campaigns, the
engine stepped by the worker's runner, vehicle reports folded in, pause / resume / cancel,
why cars wait, and the regression stop with its evidence visible at the API."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from config.settings import ApiSettings
from diagnostics.daily import PARKED_DRAW_12V, RESTING_12V, utc_day
from ota.manifest import generate_keypair, load_private_key, load_public_key, verify
from storage import ota as ota_store
from storage import views
from storage.store import Store
from tests.apikit import Server, headers_for
from worker.ota_runner import OtaRunner

pytestmark = pytest.mark.integration
DAY = 86_400_000
T0 = 1_760_000_000_000 - 1_760_000_000_000 % DAY + 2 * 3_600_000  # 02:00 UTC
PRIVATE_PEM, PUBLIC_PEM = generate_keypair()
VINS = [f"WCRAAAAAAAAAA{i:04d}" for i in range(12)]
ARTIFACT = b"bms firmware 2.0.0"
RELEASE = {"version": "2.0.0", "component": "bms", "artifact_url": "https://u.example/b.bin",
           "size": len(ARTIFACT), "sha256": hashlib.sha256(ARTIFACT).hexdigest(),
           "notes": "cell balancing"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'ota.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


@pytest.fixture
def api(store: Store, kafka_url: str, tmp_path: Path) -> Iterator[str]:
    with Server(ApiSettings(state_dir=tmp_path, kafka_url=kafka_url), store) as server:
        yield server.url


def report(store: Store, ts: int, **vehicles: dict[str, Any]) -> None:
    rows = []
    for vin, state in vehicles.items():
        signals = {"Vehicle.VehicleIdentification.Model": "Volt", "Vehicle.Speed": 0.0,
                   "Vehicle.LowVoltageSystemState": "OFF",
                   "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": 80.0,
                   "Vehicle.LowVoltageBattery.CurrentVoltage": 12.6, **state}
        rows += [("vehicle", vin, path, value, ts) for path, value in signals.items()]
    store.upsert_signals(rows)


def progress_reports(store: Store, vin: str, campaign_id: str, attempt: int, ts: int,
                     final: str = "succeeded") -> None:
    states = ["accepted", "downloading", "downloaded", "installing", final]
    ota_store.apply_reports(store, [
        {"kind": "vehicle_ota_status", "id": vin, "ts": ts + i, "seq": i,
         "data": {"status": s, "action_id": f"{campaign_id}:{attempt}"}}
        for i, s in enumerate(states)])


def test_releases_and_campaigns_need_the_ota_role(api: str, store: Store) -> None:
    viewer, agent = headers_for(store, "viewer"), headers_for(store, "agent")
    manager = headers_for(store, "ota_manager")
    assert httpx.post(f"{api}/ota/releases", json=RELEASE).status_code == 401
    for weak in (viewer, agent):
        assert httpx.post(f"{api}/ota/releases", json=RELEASE,
                          headers=weak).status_code == 403
    created = httpx.post(f"{api}/ota/releases", json=RELEASE, headers=manager)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/ota/releases/{created.json()['id']}"
    assert httpx.get(f"{api}{created.headers['location']}", headers=viewer).json() == \
        created.json()
    assert created.json()["created_wall_ms"] > T0  # staff created it: the wall clock
    assert httpx.post(f"{api}/ota/releases", json=RELEASE, headers=manager).status_code == 409
    bad = httpx.post(f"{api}/ota/releases", json={**RELEASE, "version": "2.0"},
                     headers=manager)
    assert bad.status_code == 422
    assert "semantic version" in bad.json()["detail"]
    assert httpx.get(f"{api}/ota/releases", headers=viewer).json() == {
        "items": [created.json()], "next_cursor": None}
    campaign = {"name": "bms 2.0", "release_id": created.json()["id"],
                "targets": {"vins": VINS[:2]}}
    assert httpx.post(f"{api}/ota/campaigns", json=campaign,
                      headers=agent).status_code == 403
    bad_waves = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        **campaign, "waves": [{"percent": 50}, {"percent": 20}]})
    assert bad_waves.status_code == 422
    assert "rise strictly" in bad_waves.json()["detail"]
    no_targets = httpx.post(f"{api}/ota/campaigns", headers=manager,
                            json={**campaign, "targets": {}})
    assert no_targets.status_code == 422


def test_a_campaign_rolls_out_through_the_gate_and_cancels_cleanly(api: str,
                                                                    store: Store) -> None:
    manager, viewer = headers_for(store, "ota_manager"), headers_for(store, "viewer")
    release = httpx.post(f"{api}/ota/releases", json=RELEASE, headers=manager).json()
    created = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        "name": "bms 2.0", "release_id": release["id"], "targets": {"models": ["Volt"]},
        "waves": [{"percent": 50, "success_threshold": 0.5}, {"percent": 100}],
        "soak_s": 0}).json()
    cid = created["id"]
    assert (created["state"], created["updated_event_ms"]) == ("draft", None)
    assert created["config"]["start_event_ms"] == 0
    assert httpx.post(f"{api}/ota/campaigns/{cid}/start",
                      headers=manager).status_code == 409  # nobody has reported yet
    report(store, T0 - 1000, **{v: {} for v in VINS[:5]})
    started = httpx.post(f"{api}/ota/campaigns/{cid}/start", headers=manager)
    assert started.status_code == 200, started.text
    assert started.json()["state"] == "running"
    assert started.json()["updated_event_ms"] == T0 - 1000  # the fleet's clock
    (start_event,) = started.json()["events"]
    assert (start_event["event"], start_event["at_event_ms"]) == ("campaign_started",
                                                                  T0 - 1000)
    assert sum(started.json()["progress"]["waves"]["0"].values()) == 3  # ceil(50 % of 5)
    # One car of the first wave drives off before the engine's step.
    wave0 = sorted(v for v, a in ota_store.load_actions(store, cid).items() if a.wave == 0)
    driver = wave0[0]
    report(store, T0, **{v: {} for v in VINS[:5] if v != driver},
           **{driver: {"Vehicle.Speed": 80.0, "Vehicle.LowVoltageSystemState": "ON"}})

    runner = OtaRunner(store, load_private_key(PRIVATE_PEM))
    sent = runner.step_all()
    public = load_public_key(PUBLIC_PEM)
    offered = sorted(vin for vin, _ in sent)
    for vin, raw in sent:  # every command is signed and verifiable by its car
        accepted = verify(public, orjson.loads(raw), vin=vin, installed_version="1.0.0",
                          now=T0)
        assert accepted.release.version == "2.0.0"
    assert offered == wave0[1:]  # the parked cars of the first wave, not the driver
    waiting = httpx.get(f"{api}/ota/campaigns/{cid}/waiting", headers=viewer).json()
    assert [(w["vin"], w["waiting"]) for w in waiting] == [(driver, ["not_parked",
                                                                     "ignition_on"])]
    gates = httpx.get(f"{api}/ota/campaigns/{cid}", headers=viewer).json()["progress"]
    assert gates["waiting_by_gate"] == {"ignition_on": 1, "not_parked": 1}
    for vin in offered:
        progress_reports(store, vin, cid, 1, T0 + 1000)
    card = httpx.get(f"{api}/vehicles/{offered[0]}", headers=viewer).json()
    assert card["ota"]["campaign_id"] == cid
    assert card["ota"]["state"] == "succeeded"
    assert httpx.get(f"{api}/vehicles/{driver}", headers=viewer).json()["ota"]["waiting"] == [
        "not_parked", "ignition_on"]
    history = httpx.get(f"{api}/ota/vehicles/{offered[0]}", headers=viewer).json()
    assert history[0]["state"] == "succeeded"
    assert [h["state"] for h in history[0]["history"]] == [
        "offered", "downloading", "downloaded", "installing", "succeeded"]
    assert [h["at_event_ms"] for h in history[0]["history"]] == sorted(
        h["at_event_ms"] for h in history[0]["history"])
    assert history[0]["updated_event_ms"] == history[0]["history"][-1]["at_event_ms"]
    assert card["ota"]["updated_event_ms"] == history[0]["updated_event_ms"]

    # Wave 0 met its threshold with no soak: the next step advances and offers wave 1.
    report(store, T0 + 2000, **{v: {} for v in VINS[:5]})
    runner.step_all()
    detail = httpx.get(f"{api}/ota/campaigns/{cid}", headers=viewer).json()
    assert detail["current_wave"] == 1
    assert any(e["event"] == "wave_advanced" for e in detail["events"])

    paused = httpx.post(f"{api}/ota/campaigns/{cid}/pause", headers=manager,
                        json={"reason": "holiday freeze"})
    assert paused.json()["state"] == "paused"
    assert paused.json()["pause_reason"] == \
        "holiday freeze"
    assert runner.step_all() == []  # paused: nothing offered
    assert httpx.post(f"{api}/ota/campaigns/{cid}/resume",
                      headers=manager).json()["state"] == "running"
    canceled = httpx.post(f"{api}/ota/campaigns/{cid}/cancel", headers=manager).json()
    assert canceled["state"] == "canceled"
    cancels = runner.step_all()
    for vin, raw in cancels:
        assert orjson.loads(raw)["manifest"]["type"] == "ota.cancel"
        assert vin not in offered  # the updated cars are left alone
    assert httpx.post(f"{api}/ota/campaigns/{cid}/resume",
                      headers=manager).status_code == 409
    assert httpx.get(f"{api}/ota/campaigns/nope", headers=viewer).status_code == 404


def test_a_bad_release_is_paused_by_the_regression_stop_with_evidence(
        api: str, store: Store) -> None:
    manager, viewer = headers_for(store, "ota_manager"), headers_for(store, "viewer")
    release = httpx.post(f"{api}/ota/releases", json=RELEASE, headers=manager).json()
    cid = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        "name": "bms 2.0", "release_id": release["id"], "targets": {"vins": VINS},
        "waves": [{"percent": 40, "success_threshold": 0.8}, {"percent": 100}],
        "soak_s": 3 * 86400}).json()["id"]
    report(store, T0, **{v: {} for v in VINS})
    httpx.post(f"{api}/ota/campaigns/{cid}/start", headers=manager).raise_for_status()
    runner = OtaRunner(store, load_private_key(PRIVATE_PEM))
    canary = sorted(vin for vin, _ in runner.step_all())
    assert len(canary) == 5  # ceil(40 % of 12)
    for vin in canary:
        progress_reports(store, vin, cid, 1, T0 + 1000)
    # Two days later: the updated cars rest 0.4 V lower than the others, and draw 29 Ah a
    # day from the 12 V while parked instead of 1.2.
    rows = []
    for day in (1, 2):
        for vin in VINS:
            volts = 12.2 if vin in canary else 12.6
            volts += (VINS.index(vin) % 3) * 0.01
            rows.append(("vehicle", vin, utc_day(T0 + day * DAY), RESTING_12V, 4,
                         volts - 0.01, volts + 0.01, 4 * volts, volts, T0 + day * DAY))
            draw = (28.8 if vin in canary else 1.2) + (VINS.index(vin) % 3) * 0.1
            rows.append(("vehicle", vin, utc_day(T0 + day * DAY), PARKED_DRAW_12V, 10,
                         draw - 0.1, draw + 0.1, 10 * draw, draw, T0 + day * DAY))
    views.upsert_daily_indicators(store, rows)
    report(store, T0 + 2 * DAY + 3_600_000, **{v: {} for v in VINS})
    assert runner.step_all() == []
    detail = httpx.get(f"{api}/ota/campaigns/{cid}", headers=viewer).json()
    assert detail["state"] == "paused"
    assert detail["pause_reason"] == "regression"
    finding, draw_finding = detail["pause_evidence"]["findings"]
    assert finding["indicator"] == "v12_rest_volts"
    assert finding["updated_mean"] < finding["baseline_mean"] - 0.3
    assert finding["cohorts"] == 1
    assert finding["worse_by_within_cohorts"] > 0.3
    assert draw_finding["indicator"] == "parked_12v_ah_per_day"
    assert draw_finding["updated_mean"] > 25
    assert draw_finding["baseline_mean"] < 2
    trends = httpx.get(f"{api}/vehicles/{canary[0]}", headers=viewer).json()["trends"]
    assert trends[PARKED_DRAW_12V][-1]["mean"] > 25  # on the health card too
    assert detail["current_wave"] == 0  # never advanced past the canary


def test_from_versions_targets_only_cars_known_to_run_them(api: str, store: Store) -> None:
    manager = headers_for(store, "ota_manager")
    report(store, T0, **{v: {} for v in VINS[:6]})
    first = httpx.post(f"{api}/ota/releases", json=RELEASE, headers=manager).json()
    c1 = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        "name": "to 2.0", "release_id": first["id"], "targets": {"vins": VINS[:2]},
        "waves": [{"percent": 100}]}).json()["id"]
    httpx.post(f"{api}/ota/campaigns/{c1}/start", headers=manager).raise_for_status()
    runner = OtaRunner(store, load_private_key(PRIVATE_PEM))
    for vin, _ in runner.step_all():
        progress_reports(store, vin, c1, 1, T0 + 1000)
    assert ota_store.installed_versions(store, "bms") == {VINS[0]: "2.0.0", VINS[1]: "2.0.0"}
    second = httpx.post(f"{api}/ota/releases", headers=manager, json={
        **RELEASE, "version": "2.1.0"}).json()
    c2 = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        "name": "2.0 to 2.1", "release_id": second["id"],
        "targets": {"models": ["Volt"], "from_versions": ["2.0.0"]},
        "window": {"start": "22:00", "end": "05:00", "timezone": "Europe/Berlin"},
        "waves": [{"percent": 100}]}).json()
    assert c2["config"]["window"]["timezone"] == "Europe/Berlin"
    started = httpx.post(f"{api}/ota/campaigns/{c2['id']}/start", headers=manager).json()
    assert sum(started["progress"]["waves"]["0"].values()) == 2  # only the 2.0.0 cars
    assert set(ota_store.load_actions(store, c2["id"])) == set(VINS[:2])
    viewer = headers_for(store, "viewer")
    newest = httpx.get(f"{api}/ota/campaigns", headers=viewer, params={"limit": 1}).json()
    oldest = httpx.get(f"{api}/ota/campaigns", headers=viewer,
                       params={"limit": 1, "cursor": newest["next_cursor"]}).json()
    assert [c["id"] for c in newest["items"] + oldest["items"]] == [c2["id"], c1]
    assert oldest["next_cursor"] is None
    releases = httpx.get(f"{api}/ota/releases", headers=viewer, params={"limit": 1}).json()
    more = httpx.get(f"{api}/ota/releases", headers=viewer,
                     params={"limit": 1, "cursor": releases["next_cursor"]}).json()
    assert [r["version"] for r in releases["items"] + more["items"]] == ["2.0.0", "2.1.0"]
    bad = httpx.get(f"{api}/ota/campaigns", headers=viewer,
                    params={"cursor": releases["next_cursor"]})  # another list's cursor
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["query", "cursor"]
    bad_zone = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        "name": "x", "release_id": second["id"], "targets": {"vins": VINS[:1]},
        "window": {"timezone": "Mars/Olympus"}})
    assert bad_zone.status_code == 422
    assert "IANA" in bad_zone.json()["detail"]


# ---------------------------------------------------------------------------- regions

NORWAY = {"name": "norway", "description": "Norwegian market",
          "boxes": [{"min_lat": 57.9, "min_lon": 4.5, "max_lat": 71.2, "max_lon": 12.5}]}
SWEDEN = {"name": "sweden", "polygons": [[[55.3, 11.0], [55.3, 24.2], [69.1, 24.2],
                                          [69.1, 11.0], [55.3, 11.0]]]}


def located(lat: float, lon: float) -> dict[str, float]:
    return {"Vehicle.CurrentLocation.Latitude": lat, "Vehicle.CurrentLocation.Longitude": lon}


def test_regions_are_created_validated_listed_and_deleted(api: str, store: Store) -> None:
    manager, viewer = headers_for(store, "ota_manager"), headers_for(store, "viewer")
    assert httpx.post(f"{api}/ota/regions", json=NORWAY, headers=viewer).status_code == 403
    created = httpx.post(f"{api}/ota/regions", json=NORWAY, headers=manager)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/ota/regions/norway"
    assert created.json()["areas"]["boxes"] == NORWAY["boxes"]
    assert httpx.post(f"{api}/ota/regions", json=NORWAY, headers=manager).status_code == 409
    sweden = httpx.post(f"{api}/ota/regions", json=SWEDEN, headers=manager)
    assert sweden.status_code == 201, sweden.text
    assert len(sweden.json()["areas"]["polygons"][0]) == 4  # the closing point is implied
    bad = {
        "upside-down box": ({"name": "x", "boxes": [{**NORWAY["boxes"][0], "min_lat": 80}]},
                            "boxes[0]: box min_lat 80.0 must be below max_lat 71.2"),
        "latitude off the globe": ({"name": "x", "boxes": [{**NORWAY["boxes"][0],
                                                            "max_lat": 91}]}, "90"),
        "bow tie": ({"name": "x", "polygons": [[[0, 0], [1, 1], [1, 0], [0, 1]]]},
                    "polygons[0]: the polygon crosses itself"),
        "point with three numbers": ({"name": "x", "polygons": [[[0, 0, 0], [1, 1], [1, 0]]]},
                                     "polygons"),
        "no area at all": ({"name": "x"}, "at least one box or polygon"),
        "a name with a slash": ({**NORWAY, "name": "eu/north"}, "name"),
    }
    for what, (body, message) in bad.items():
        resp = httpx.post(f"{api}/ota/regions", json=body, headers=manager)
        assert resp.status_code == 422, what
        assert message in resp.json()["detail"], (what, resp.json()["detail"])
    first = httpx.get(f"{api}/ota/regions", headers=viewer, params={"limit": 1}).json()
    rest = httpx.get(f"{api}/ota/regions", headers=viewer,
                     params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [r["name"] for r in first["items"] + rest["items"]] == ["norway", "sweden"]
    assert rest["next_cursor"] is None
    assert httpx.get(f"{api}/ota/regions/norway", headers=viewer).json()["description"] == \
        "Norwegian market"
    assert httpx.get(f"{api}/ota/regions/atlantis", headers=viewer).status_code == 404
    assert httpx.delete(f"{api}/ota/regions/sweden", headers=viewer).status_code == 403
    deleted = httpx.delete(f"{api}/ota/regions/sweden", headers=manager)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert httpx.delete(f"{api}/ota/regions/sweden", headers=manager).status_code == 404
    assert [r["name"] for r in httpx.get(f"{api}/ota/regions", headers=viewer).json()[
        "items"]] == ["norway"]


def test_a_campaign_targets_by_region_frozen_at_start(api: str, store: Store) -> None:
    manager, viewer = headers_for(store, "ota_manager"), headers_for(store, "viewer")
    httpx.post(f"{api}/ota/regions", json=NORWAY, headers=manager).raise_for_status()
    release = httpx.post(f"{api}/ota/releases", json=RELEASE, headers=manager).json()
    oslo, bergen, stockholm, unknown = VINS[:4]
    report(store, T0, **{oslo: located(59.91, 10.75), bergen: located(60.39, 5.32),
                         stockholm: located(59.33, 18.07), unknown: {}})
    body = {"name": "bms 2.0 Norway", "release_id": release["id"],
            "targets": {"models": ["Volt"], "regions": ["norway"]},
            "waves": [{"percent": 100}]}
    unknown_region = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        **body, "targets": {"models": ["Volt"], "regions": ["norway", "atlantis"]}})
    assert unknown_region.status_code == 422
    assert "unknown region(s): atlantis" in unknown_region.json()["detail"]
    cid = httpx.post(f"{api}/ota/campaigns", headers=manager, json=body).json()["id"]
    assert httpx.delete(f"{api}/ota/regions/norway", headers=manager).status_code == 409

    preview = httpx.get(f"{api}/ota/campaigns/{cid}/targets", headers=viewer).json()
    assert preview["vins"] == sorted([oslo, bergen])
    assert preview["not_targeted"] == {"location_unknown": 1, "outside_regions": 1}
    assert {e["vin"]: e["reason"] for e in preview["excluded"]} == {
        unknown: "location_unknown", stockholm: "outside_regions"}
    assert {e["vin"]: e["located_event_ms"] for e in preview["excluded"]} == {
        unknown: None, stockholm: T0}

    started = httpx.post(f"{api}/ota/campaigns/{cid}/start", headers=manager).json()
    assert set(ota_store.load_actions(store, cid)) == {oslo, bergen}
    (event,) = [e for e in started["events"] if e["event"] == "campaign_started"]
    assert event["vehicles"] == 2
    assert event["location_unknown"] == [unknown]
    assert event["not_targeted"] == {"location_unknown": 1, "outside_regions": 1}
    assert event["regions"]["norway"]["boxes"] == NORWAY["boxes"]
    assert httpx.get(f"{api}/ota/campaigns/{cid}/targets",
                     headers=viewer).status_code == 409  # frozen: see the start event
    # Frozen: Stockholm's car driving to Oslo does not join the started campaign, and the
    # region may now go (the campaign's log keeps its areas).
    report(store, T0 + 1000, **{stockholm: located(59.91, 10.75)})
    OtaRunner(store, load_private_key(PRIVATE_PEM)).step_all()
    assert set(ota_store.load_actions(store, cid)) == {oslo, bergen}
    assert httpx.delete(f"{api}/ota/regions/norway", headers=manager).status_code == 204


def test_a_campaign_whose_region_matches_nobody_is_not_started(api: str, store: Store) -> None:
    manager = headers_for(store, "ota_manager")
    httpx.post(f"{api}/ota/regions", json=SWEDEN, headers=manager).raise_for_status()
    release = httpx.post(f"{api}/ota/releases", json=RELEASE, headers=manager).json()
    report(store, T0, **{VINS[0]: located(59.91, 10.75), VINS[1]: {}})
    cid = httpx.post(f"{api}/ota/campaigns", headers=manager, json={
        "name": "sweden only", "release_id": release["id"],
        "targets": {"regions": ["sweden"]}}).json()["id"]
    refused = httpx.post(f"{api}/ota/campaigns/{cid}/start", headers=manager)
    assert refused.status_code == 409
    assert "location_unknown" in refused.json()["detail"]
    assert "outside_regions" in refused.json()["detail"]

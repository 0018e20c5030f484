"""The simulator's OTA side in event time (no broker): commands meet the fleet's cars."""

from __future__ import annotations

from typing import Any, cast

import orjson

from ingest.contract import validate
from ota.engine import Command
from ota.manifest import generate_keypair, load_private_key, load_public_key, offer_manifest, sign
from simulators.fleet import Fleet
from simulators.ota_client import ClientConfig, simulated_release
from simulators.ota_runtime import OtaFleet, OtaSettings
from storage.ota_refusals import report_target
from storage.store import Store
from vocab.eventtime import DAY_MS, HOUR_MS
from worker.ota_runner import OtaRunner

PRIVATE_PEM, PUBLIC_PEM = generate_keypair()
PRIVATE, PUBLIC = load_private_key(PRIVATE_PEM), load_public_key(PUBLIC_PEM)
RELEASE = simulated_release("2.0.0", "bms", "https://updates.example.com/bms-2.0.0.bin")


def command(vin: str, issued_at: int, attempt: int = 1) -> bytes:
    return orjson.dumps(sign(PRIVATE, offer_manifest(
        RELEASE, vin=vin, campaign_id="c1", attempt=attempt, issued_at=issued_at,
        ttl_ms=DAY_MS)))


def run(fleet: OtaFleet, commands: dict[int, list[tuple[str, bytes]]], until: int
        ) -> list[tuple[int, str, bytes]]:
    """The merged stream the simulator publishes: fleet messages, and the reports of the
    commands arriving at the given event times (what publish_paced_ota does, minus clocks)."""
    out: list[tuple[int, str, bytes]] = []
    pending = sorted(commands.items())
    for message in fleet.fleet.messages(until):
        ts = message[0]
        while pending and pending[0][0] <= ts:
            at, batch = pending.pop(0)
            out += fleet.advance(at)
            for topic, payload in batch:
                out += fleet.command(topic, payload, at)
        out += fleet.advance(ts)
        out.append(message)
        fleet.observe(*message)
    return out


def ota_reports(stream: list[tuple[int, str, bytes]], vin: str) -> list[dict[str, Any]]:
    return [validate(t, p)["data"] | {"ts": ts, "seq": validate(t, p)["seq"]}
            for ts, t, p in stream if t == f"vehicles/{vin}/ota/status"]


def test_a_parked_car_installs_and_a_driving_car_refuses_with_one_seq_per_car() -> None:
    fleet = Fleet(6, 0, seed=4)
    start = fleet.start_ms
    ota = OtaFleet(fleet, OtaSettings(PUBLIC, ClientConfig(bad_releases=frozenset({"2.0.0"})),
                                      {"bms": "1.0.0"}))
    # Find, from the stream itself, a moment one car drives (its ignition is ON).
    drives = [(ts, t.split("/")[1]) for ts, t, p in fleet.messages(start + 2 * DAY_MS)
              if t.endswith("/events") and orjson.loads(p).get("state") == "ON"]
    drive_at, driver = drives[0]
    parked = fleet.vehicles[0].vin if fleet.vehicles[0].vin != driver else \
        fleet.vehicles[1].vin
    stream = run(ota, {
        start + HOUR_MS: [(f"vehicles/{parked}/ota/command", command(parked, start))],
        drive_at + 120_000: [(f"vehicles/{driver}/ota/command", command(driver, start))],
    }, start + 2 * DAY_MS)

    installed = ota_reports(stream, parked)
    assert [r["status"] for r in installed] == ["accepted", "downloading", "downloaded",
                                                "installing", "succeeded"]
    assert installed[0]["ts"] == start + HOUR_MS  # 01:00: every car is still at home
    assert all(r["action_id"] == "c1:1" and r["campaign_id"] == "c1" for r in installed)
    refused = ota_reports(stream, driver)
    assert [r["status"] for r in refused] == ["rejected"]
    assert refused[0]["detail"].startswith("not_ready: driving")
    # OTA reports share each car's seq counter with its telemetry and events: unique.
    for vin in (parked, driver):
        seqs = [orjson.loads(p)["seq"] for _, t, p in stream
                if t.startswith(f"vehicles/{vin}/") and orjson.loads(p).get("seq")]
        assert len(seqs) == len(set(seqs))
    assert fleet.bad_release_since == {parked: installed[-1]["ts"]}
    assert ota.clients[parked].installed == {"bms": "2.0.0"}


def test_commands_for_unknown_cars_and_junk_payloads() -> None:
    fleet = Fleet(1, 0, seed=4)
    ota = OtaFleet(fleet, OtaSettings(PUBLIC))
    vin = fleet.vehicles[0].vin
    stream = run(ota, {fleet.start_ms + HOUR_MS: [
        ("vehicles/WCRAAAAAAAAAAAAA9/ota/command", command("WCRAAAAAAAAAAAAA9", 0)),
        (f"vehicles/{vin}/ota/command", b"{not json"),
    ]}, fleet.start_ms + 2 * HOUR_MS)
    reports = ota_reports(stream, vin)
    assert [r["status"] for r in reports] == ["rejected"]
    assert reports[0]["detail"].startswith("malformed")
    assert "campaign_id" not in reports[0]


def test_the_cloud_runners_commands_are_accepted_and_its_report_parser_reads_the_reports(
) -> None:
    """Both ends of the wire: ``worker.ota_runner`` signs, the car answers, ``storage.ota``
    folds."""
    runner = OtaRunner(cast(Store, None), PRIVATE)  # signing needs no database
    fleet = Fleet(1, 0, seed=4)
    vin = fleet.vehicles[0].vin
    ota = OtaFleet(fleet, OtaSettings(PUBLIC, ClientConfig(), {"bms": "1.0.0"}))
    at = fleet.start_ms + HOUR_MS
    offer = runner.signed(Command("offer", vin, "camp-7", 2, RELEASE.as_dict(), at + HOUR_MS),
                          at)
    cancel = runner.signed(Command("cancel", vin, "camp-7", 2), at)
    topic = f"vehicles/{vin}/ota/command"
    stream = run(ota, {at: [(topic, offer)], at + 1: [(topic, cancel)]}, at + HOUR_MS)
    reports = ota_reports(stream, vin)
    assert [r["status"] for r in reports] == ["accepted", "downloading", "canceled"]
    assert {report_target(r) for r in reports} == {("camp-7", 2)}

"""Simulated chargers as OCPP 1.6J charge points: through the real gateway and Kafka, their
faults give the same charger alerts as the same chargers publishing over MQTT."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from diagnostics.offline import OfflineDiagnostics
from ingest import contract, topics
from ingest.kafka import ensure_topics
from ownercare import embedded
from simulators.fleet import Fleet
from simulators.ocpp_charger import OcppChargers, OcppSimError, Translator, load_passwords
from tests.ingest.ocpp_kit import running_gateway
from tests.stackkit import read_topic, records_in

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# Offline, this fleet's two charger faults are each found (the premise, asserted below).
VEHICLES, CHARGERS, SEED, DAYS = 12, 3, 1, 20
FAULTS = {"charger_fault": 1, "charger_derating": 1}


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of its own: the fleet's charger ids (CP-0001...) are the same in every run."""
    port = embedded.free_port()
    proc = embedded.start_tansu(port, tmp_path_factory.mktemp("tansu") / "tansu.log")
    asyncio.run(ensure_topics(f"127.0.0.1:{port}", 4))
    yield f"kafka://127.0.0.1:{port}"
    embedded.stop_process(proc)


def charger_alerts(records: list[dict[str, Any]], end_ms: int) -> set[tuple[str, str, int]]:
    """(charger, alert type, first seen) of every charger alert the worker's pipelines raise."""
    offline = OfflineDiagnostics()
    alerts = offline.process(records) + offline.finish(end_ms)
    return {(a["asset_id"], a["type"], a["first_seen"]) for a in alerts
            if a["asset_kind"] == "charger"}


def test_ocpp_chargers_raise_the_same_charger_alerts_as_mqtt_chargers(
        own_kafka: str, tmp_path: Path) -> None:
    fleet = Fleet(VEHICLES, CHARGERS, seed=SEED, faults=FAULTS, drive_interval_s=300,
                  parked_interval_s=1800)
    end_ms = fleet.start_ms + DAYS * 86_400_000
    messages = [(topic, payload) for _, topic, payload in fleet.messages(end_ms)
                if topic.startswith("chargers/")]
    # Over MQTT: the bridge validates each message into its record.
    over_mqtt = [contract.validate(topic, payload) for topic, payload in messages]
    expected = charger_alerts(over_mqtt, end_ms)
    truth = {(t["charger_id"], t["fault"]) for t in fleet.truth()}
    assert {(cid, kind) for cid, kind, _ in expected} == truth  # the premise

    password = "simulated-chargers-password"
    with running_gateway(own_kafka, tmp_path, dict.fromkeys(fleet.chargers, password),
                         ocpp_clockless_records=False, ocpp_max_future_skew_s=0) as gw:
        chargers = OcppChargers(f"ws://127.0.0.1:{gw.gateway.port}/ocpp", {"*": password})
        try:
            chargers.start(fleet.chargers)
            for topic, payload in messages:
                chargers.send(topic, payload)
            assert chargers.drain(600), f"{chargers.pending} messages not delivered"
        finally:
            chargers.close()
        assert chargers.refused == 0
        produced = gw.gateway.stats["records"]
    rows = read_topic(own_kafka, topics.CHARGERS,
                      lambda rows: len(records_in(rows, set(fleet.chargers))) >= produced,
                      timeout=120)
    over_ocpp = records_in(rows, set(fleet.chargers))
    assert len(over_ocpp) == produced
    # Every MQTT message became one record, plus one per StartTransaction / StopTransaction.
    sessions = sum(1 for r in over_mqtt if r["kind"] == "charger_status"
                   and r["data"]["status"] == "Charging")
    assert len(over_ocpp) == len(over_mqtt) + 2 * sessions
    # Kafka keeps each charger's order; the fleet's interleaving is by event time.
    over_ocpp.sort(key=lambda r: r["ts"])
    assert charger_alerts(over_ocpp, end_ms) == expected


def test_translation_opens_and_closes_transactions_around_the_session() -> None:
    t = Translator("CP-1")
    status = {"ts": 1_767_571_200_000, "connectorId": 1, "errorCode": "NoError"}
    assert [type(c).__name__ for c in t.status_calls({**status, "status": "Preparing"})] == [
        "StatusNotification"]
    meter = {"ts": 1_767_571_260_000, "connectorId": 1, "transactionId": 100_001,
             "vin": "WVWZZZAUZKW000001",
             "measurands": {"Energy.Active.Import.Register": 1500.4, "SoC": 40.0}}
    start = t.start_call(meter)
    assert start is not None
    assert start.id_tag == "WVWZZZAUZKW000001"
    assert start.meter_start == 1500
    assert start.timestamp == "2026-01-05T00:01:00.000Z"
    t.transaction = 77
    assert t.start_call(meter) is None  # the same session's next reading
    values = t.meter_call({**meter, "measurands": {"Energy.Active.Import.Register": 2500.0}})
    assert values.transaction_id == 77
    assert values.meter_value[0]["sampledValue"] == [
        {"value": "2500.0", "measurand": "Energy.Active.Import.Register", "unit": "Wh",
         "context": "Sample.Periodic"}]
    calls = t.status_calls({**status, "status": "Faulted", "errorCode": "GroundFailure"})
    assert [type(c).__name__ for c in calls] == ["StopTransaction", "StatusNotification"]
    assert calls[0].meter_stop == 2500
    assert calls[0].transaction_id == 77
    assert t.transaction is None


def test_walk_in_tags_are_not_taken_for_vins() -> None:
    from ingest.ocpp_records import vin_of

    t = Translator("CP-1")
    start = t.start_call({"ts": 1_767_571_200_000, "connectorId": 1, "transactionId": 5,
                          "measurands": {"Power.Active.Import": 1.0}})
    assert start is not None
    assert vin_of(start.id_tag) is None
    assert len(start.id_tag) <= 20


def test_passwords_file(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    path.write_text("# demo\nCP-0001:one\n*:everyone\n")
    assert load_passwords(path) == {"CP-0001": "one", "*": "everyone"}
    chargers = OcppChargers("ws://127.0.0.1:1/ocpp", {"CP-0001": "one"})
    try:
        with pytest.raises(OcppSimError, match="no OCPP password for charger CP-0002"):
            chargers.password_of("CP-0002")
    finally:
        chargers.close()
    path.write_text("CP-0001\n")
    with pytest.raises(ValueError, match="line 1: expected charger_id:password"):
        load_passwords(path)


def test_a_refused_charger_is_one_clear_error(own_kafka: str, tmp_path: Path) -> None:
    with running_gateway(own_kafka, tmp_path, {"CP-KNOWN": "right"}) as gw:
        chargers = OcppChargers(f"ws://127.0.0.1:{gw.gateway.port}/ocpp", {"*": "wrong"})
        try:
            with pytest.raises(OcppSimError, match="refused charger CP-KNOWN: HTTP 401"):
                chargers.start(["CP-KNOWN"])
        finally:
            chargers.close()


def test_messages_keep_their_payload_shape() -> None:
    # The translator reads the simulator's own MQTT payloads: a change there shows up here.
    fleet = Fleet(0, 1, seed=3)
    kinds = {topic.rsplit("/", 1)[1] for _, topic, _ in
             fleet.messages(fleet.start_ms + 3 * 86_400_000)}
    assert kinds == {"status", "meter"}
    first = next(orjson.loads(p) for _, t, p in fleet.messages() if t.endswith("/status"))
    assert {"ts", "connectorId", "status", "errorCode"} <= set(first)

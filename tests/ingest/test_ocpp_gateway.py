"""The OCPP gateway against the ocpp library's own charge point, over a real WebSocket, with a
real Kafka broker (Tansu): what it answers, what it produces, what it refuses."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.v16 import call
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ingest import contract, topics
from tests.ingest.ocpp_kit import basic, charge_point, raw_call, running_gateway
from tests.stackkit import random_vin, read_topic, records_in

pytestmark = pytest.mark.integration

T0 = 1_767_571_200_000  # 2026-01-05T00:00Z


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def new_id(prefix: str) -> str:
    return f"{prefix}-{random.randrange(16**8):08x}"


def test_boot_status_and_a_transaction_give_the_bridge_records(kafka_url: str,
                                                               tmp_path: Path) -> None:
    cid, password, vin = new_id("CP-TX"), "s3cret-password-1", random_vin()
    with running_gateway(kafka_url, tmp_path, {cid: password}) as gw:
        async def session() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with charge_point(gw.url(cid), cid, password) as cp:
                out["before_boot"] = int(time.time() * 1000)
                boot = await cp.call(call.BootNotification(charge_point_model="AC22",
                                                           charge_point_vendor="Acme"))
                out["boot"] = boot
                await cp.call(call.StatusNotification(
                    connector_id=1, error_code="NoError", status="Preparing",
                    timestamp=iso(T0)))
                start = await cp.call(call.StartTransaction(
                    connector_id=1, id_tag=vin, meter_start=120_000, timestamp=iso(T0 + 5_000)))
                out["start"] = start
                tx = start.transaction_id
                await cp.call(call.StatusNotification(
                    connector_id=1, error_code="NoError", status="Charging",
                    timestamp=iso(T0 + 5_000)))
                await cp.call(call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[
                    {"timestamp": iso(T0 + 65_000), "sampledValue": [
                        {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                        {"value": "22000", "measurand": "Power.Offered", "unit": "W"},
                        {"value": "121.5", "unit": "kWh", "context": "Sample.Periodic"},
                        {"value": "10.4", "measurand": "Current.Import", "unit": "A",
                         "phase": "L1"},
                        {"value": "10.6", "measurand": "Current.Import", "unit": "A",
                         "phase": "L2"},
                        {"value": "50.0", "measurand": "Frequency"},
                        {"value": "41", "measurand": "SoC", "unit": "Percent",
                         "location": "EV"}]},
                    {"timestamp": iso(T0 + 125_000), "sampledValue": [
                        {"value": "7100", "measurand": "Power.Active.Import", "unit": "W"},
                        {"value": "305.15", "measurand": "Temperature", "unit": "K"}]}]))
                stop = await cp.call(call.StopTransaction(
                    meter_stop=123_000, timestamp=iso(T0 + 185_000), transaction_id=tx,
                    id_tag=vin, reason="EVDisconnected"))
                out["stop"] = stop
                await cp.call(call.StatusNotification(
                    connector_id=1, error_code="NoError", status="Finishing",
                    timestamp=iso(T0 + 185_000)))
                out["heartbeat"] = await cp.call(call.Heartbeat())
                out["after_heartbeat"] = int(time.time() * 1000)
            return out

        out = asyncio.run(session())
    assert out["boot"].status == "Accepted"
    assert out["boot"].interval == 300
    assert out["start"].id_tag_info["status"] == "Accepted"
    tx = out["start"].transaction_id
    assert isinstance(tx, int)
    assert 0 < tx < 2**31
    assert out["stop"].id_tag_info["status"] == "Accepted"
    assert out["heartbeat"].current_time.endswith("Z")

    rows = read_topic(kafka_url, topics.CHARGERS,
                      lambda rows: len(records_in(rows, {cid})) >= 9, timeout=60)
    got = records_in(rows, {cid})
    assert len(got) == 9, got
    keys = {key for key, value in rows if cid.encode() in value}
    assert keys == {cid.encode()}  # the bridge's key for one-record batches

    # The MQTT payloads a charger following the contract would have published for the same
    # events, written out by hand; the bridge's validation of them is the reference.
    boot_ts, beat_ts = got[0]["ts"], got[8]["ts"]
    assert out["before_boot"] <= boot_ts <= beat_ts <= out["after_heartbeat"]
    meter = f"chargers/{cid}/meter"
    status = f"chargers/{cid}/status"
    equivalent: list[tuple[str, dict[str, Any]]] = [
        (status, {"ts": boot_ts, "connectorId": 0, "status": "Available",
                  "errorCode": "NoError", "vendorId": "Acme", "info": "AC22"}),
        (status, {"ts": T0, "connectorId": 1, "status": "Preparing", "errorCode": "NoError"}),
        (meter, {"ts": T0 + 5_000, "connectorId": 1, "transactionId": tx, "vin": vin,
                 "measurands": {"Energy.Active.Import.Register": 120_000.0}}),
        (status, {"ts": T0 + 5_000, "connectorId": 1, "status": "Charging",
                  "errorCode": "NoError"}),
        (meter, {"ts": T0 + 65_000, "connectorId": 1, "transactionId": tx, "vin": vin,
                 "measurands": {"Power.Active.Import": 7200.0, "Power.Offered": 22000.0,
                                "Energy.Active.Import.Register": 121_500.0,
                                "Current.Import": 10.5, "SoC": 41.0}}),
        (meter, {"ts": T0 + 125_000, "connectorId": 1, "transactionId": tx, "vin": vin,
                 "measurands": {"Power.Active.Import": 7100.0, "Temperature": 32.0}}),
        (meter, {"ts": T0 + 185_000, "connectorId": 1, "transactionId": tx, "vin": vin,
                 "measurands": {"Energy.Active.Import.Register": 123_000.0}}),
        (status, {"ts": T0 + 185_000, "connectorId": 1, "status": "Finishing",
                  "errorCode": "NoError"}),
        (status, {"ts": beat_ts, "connectorId": 0, "status": "Available",
                  "errorCode": "NoError"}),
    ]
    # seq: event time, then arrival order within a millisecond (a Start and a status at
    # T0 + 5 s, the Stop's register and Finishing at T0 + 185 s).
    seqs = [r["seq"] for r in got]
    assert [s - r["ts"] * 1000 for s, r in zip(seqs, got, strict=True)] == [
        0, 0, 0, 1, 0, 0, 0, 1, 0]
    expected = [contract.validate(topic, orjson.dumps({**body, "seq": seq}))
                for (topic, body), seq in zip(equivalent, seqs, strict=True)]
    assert got == expected


def test_unknown_charge_points_and_wrong_passwords_are_refused_at_the_handshake(
        kafka_url: str, tmp_path: Path) -> None:
    cid, other, password = new_id("CP-AUTH"), new_id("CP-AUTH"), "right-password-123"
    with running_gateway(kafka_url, tmp_path, {cid: password, other: "other-password-456"}
                         ) as gw:
        async def status_of(url: str, headers: dict[str, str],
                            subprotocols: list[str] | None = None) -> int:
            try:
                async with connect(url, subprotocols=subprotocols or ["ocpp1.6"],  # type: ignore[arg-type]
                                   additional_headers=headers):
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        async def attempts() -> dict[str, int]:
            return {
                "wrong password": await status_of(gw.url(cid), basic(cid, "wrong-password")),
                "unknown charge point": await status_of(gw.url("CP-NOBODY"),
                                                        basic("CP-NOBODY", password)),
                "another's credentials": await status_of(gw.url(cid), basic(other,
                                                         "other-password-456")),
                "no credentials": await status_of(gw.url(cid), {}),
                "bearer instead of basic": await status_of(
                    gw.url(cid), {"Authorization": f"Bearer {password}"}),
                "not an ocpp path": await status_of(
                    f"ws://127.0.0.1:{gw.gateway.port}/elsewhere/{cid}", basic(cid, password)),
                "another subprotocol": await status_of(gw.url(cid), basic(cid, password),
                                                       ["ocpp2.0.1"]),
                "right password": await status_of(gw.url(cid), basic(cid, password)),
            }

        got = asyncio.run(attempts())
        refused = gw.gateway.stats["handshakes_refused"]
    assert got == {"wrong password": 401, "unknown charge point": 401,
                   "another's credentials": 401, "no credentials": 401,
                   "bearer instead of basic": 401, "not an ocpp path": 404,
                   "another subprotocol": 400, "right password": 101}
    assert refused == 7


def test_bad_frames_get_callerrors_and_dead_letters_and_the_connection_stays_usable(
        kafka_url: str, tmp_path: Path) -> None:
    cid, bystander, password = new_id("CP-BAD"), new_id("CP-OK"), "bad-frames-password"
    future = iso(int(time.time() * 1000) + 3_600_000)
    bad: list[tuple[str, str, str, str]] = [  # frame, expected error code, dead-letter reason
        ("this is not json", "FormationViolation", "not_json", "-1"),
        ('{"a": 1}', "FormationViolation", "not_ocpp_frame", "-1"),
        ('[7, "m1", "Heartbeat", {}]', "ProtocolError", "bad_message_type", "m1"),
        ('[2, "m2", "Heartbeat"]', "FormationViolation", "not_ocpp_frame", "m2"),
        ('[2, "m3", "Frobnicate", {}]', "NotImplemented", "unknown_action", "m3"),
        ('[2, "m4", "RemoteStartTransaction", {"idTag": "X"}]', "NotSupported",
         "unsupported_action", "m4"),
        ('[2, "m5", "StatusNotification", {"connectorId": "one", "errorCode": "NoError", '
         '"status": "Available"}]', "TypeConstraintViolation", "schema_invalid", "m5"),
        ('[2, "m6", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", '
         '"status": "Available", "colour": "red"}]', "FormationViolation", "schema_invalid",
         "m6"),
        ('[2, "m7", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": '
         '"2026-01-05T00:00:00Z", "sampledValue": [{"value": "lots", "measurand": '
         '"Power.Active.Import"}]}]}]', "PropertyConstraintViolation", "wrong_type", "m7"),
        ('[2, "m8", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": '
         '"2026-01-05T00:00:00Z", "sampledValue": [{"value": "5", "measurand": '
         '"Power.Active.Import", "unit": "A"}]}]}]', "PropertyConstraintViolation",
         "bad_value", "m8"),
        ('[2, "m9", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", '
         f'"status": "Available", "timestamp": "{future}"}}]', "PropertyConstraintViolation",
         "ts_in_future", "m9"),
        ('[2, "m10", "StatusNotification", {"connectorId": 500, "errorCode": "NoError", '
         '"status": "Available", "timestamp": "2026-01-05T00:00:00Z"}]',
         "PropertyConstraintViolation", "out_of_range", "m10"),
    ]
    with running_gateway(kafka_url, tmp_path, {cid: password, bystander: password}) as gw:
        async def scenario() -> tuple[list[list[object]], list[list[object]], str]:
            answers, heartbeats = [], []
            async with (charge_point(gw.url(bystander), bystander, password) as other,
                        connect(gw.url(cid), subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                additional_headers=basic(cid, password)) as ws):
                for n, (frame, *_rest) in enumerate(bad):
                    answers.append(await raw_call(ws, frame))
                    # After every bad frame the same connection still works...
                    heartbeats.append(await raw_call(ws, f'[2, "hb{n}", "Heartbeat", {{}}]'))
                # ...and so does the other charge point's.
                beat = await other.call(call.Heartbeat())
            return answers, heartbeats, beat.current_time

        answers, heartbeats, other_time = asyncio.run(scenario())
    for (frame, code, _reason, unique_id), answer in zip(bad, answers, strict=True):
        assert answer[:3] == [4, unique_id, code], (frame, answer)
        assert isinstance(answer[3], str), answer
        assert answer[3], answer
        assert isinstance(answer[4], dict)
    for n, heartbeat in enumerate(heartbeats):
        assert heartbeat[:2] == [3, f"hb{n}"]
        assert "currentTime" in heartbeat[2]
    assert other_time.endswith("Z")

    rows = read_topic(kafka_url, topics.DEAD_LETTER,
                      lambda rows: sum(cid.encode() in v for _, v in rows) >= len(bad),
                      timeout=60)
    letters = [json.loads(v) for _, v in rows if json.loads(v).get("charger_id") == cid]
    assert [letter["reason"] for letter in letters] == [reason for _, _, reason, _ in bad]
    assert [letter["ocpp_error"] for letter in letters] == [code for _, code, _, _ in bad]
    assert all(letter["source"] == "ocpp" and letter["detail"] for letter in letters)
    assert [letter["action"] for letter in letters][-3:] == ["MeterValues", "StatusNotification",
                                                           "StatusNotification"]
    assert {key for key, v in rows if cid.encode() in v} == {cid.encode()}
    # Nothing of the refused calls reached the chargers topic; the heartbeats did.
    charger_rows = read_topic(kafka_url, topics.CHARGERS,
                              lambda rows: len(records_in(rows, {cid})) >= len(bad),
                              timeout=60)
    kept = records_in(charger_rows, {cid})
    assert len(kept) == len(bad)
    assert all(r["data"]["connectorId"] == 0 for r in kept)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
ACTIONS = st.sampled_from(["Heartbeat", "StatusNotification", "MeterValues", "BootNotification",
                           "StartTransaction", "StopTransaction", "Authorize", "Reset",
                           "Nonsense"]) | st.text(max_size=12)
FRAMES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda *parts: json.dumps(list(parts)), st.integers(0, 5), st.text(max_size=40),
              ACTIONS, st.dictionaries(st.text(max_size=12), JSON, max_size=4)),
    st.builds(lambda parts: json.dumps(parts), st.lists(JSON, max_size=5)),
)


@settings(max_examples=5)
@given(st.lists(FRAMES, min_size=1, max_size=25))
def test_any_frame_gets_at_most_one_answer_and_the_connection_survives(
        kafka_url: str, tmp_path_factory: pytest.TempPathFactory, frames: list[str]) -> None:
    cid, password = new_id("CP-FUZZ"), "fuzz-password-123"
    with running_gateway(kafka_url, tmp_path_factory.mktemp("fuzz"), {cid: password}) as gw:
        async def scenario() -> list[list[list[object]]]:
            replies: list[list[list[object]]] = []
            async with connect(gw.url(cid), subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               additional_headers=basic(cid, password)) as ws:
                for n, frame in enumerate(frames):
                    await ws.send(frame)
                    await ws.send(f'[2, "probe-{n}", "Heartbeat", {{}}]')
                    got: list[list[object]] = []
                    while True:
                        answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
                        if answer[1] == f"probe-{n}":
                            assert answer[0] == 3, answer
                            break
                        got.append(answer)
                    replies.append(got)
            return replies

        replies = asyncio.run(scenario())
    for frame, got in zip(frames, replies, strict=True):
        assert len(got) <= 1, (frame, got)
        for answer in got:
            assert answer[0] in (3, 4), (frame, answer)
            if answer[0] == 4:  # a CALLERROR names a code of OCPP 1.6
                assert answer[2] in {"NotImplemented", "NotSupported", "InternalError",
                                     "ProtocolError", "SecurityError", "FormationViolation",
                                     "PropertyConstraintViolation",
                                     "OccurenceConstraintViolation",
                                     "TypeConstraintViolation", "GenericError"}, answer


def test_the_id_tag_allow_list_decides_authorize_and_start(kafka_url: str,
                                                           tmp_path: Path) -> None:
    cid, password = new_id("CP-TAGS"), "tags-password-123"
    with running_gateway(kafka_url, tmp_path, {cid: password},
                         ocpp_id_tags="04A1B2C3, wvwzzzauzkw000001") as gw:
        async def scenario() -> list[str]:
            async with charge_point(gw.url(cid), cid, password) as cp:
                statuses = [(await cp.call(call.Authorize(id_tag=tag))).id_tag_info["status"]
                            for tag in ("04a1b2c3", "WVWZZZAUZKW000001", "DEADBEEF")]
                start = await cp.call(call.StartTransaction(
                    connector_id=1, id_tag="DEADBEEF", meter_start=0, timestamp=iso(T0)))
                return [*statuses, start.id_tag_info["status"]]

        got = asyncio.run(scenario())
    # idTags are case-insensitive in OCPP 1.6; an unknown tag's transaction is still recorded
    # (the charge point decides whether to go on), but not accepted.
    assert got == ["Accepted", "Accepted", "Invalid", "Invalid"]

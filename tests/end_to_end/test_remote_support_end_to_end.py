"""Remote support and the owner's voice through the whole embedded stack (``ownercare run``):
a weak 12 V battery raises an alert and opens a case; an agent runs ``battery_test`` from the
case (API -> worker signs -> Kafka -> bridge -> MQTT -> the simulated car); the car's failed
load test comes back (MQTT -> bridge -> Kafka -> view writer) and confirms the alert; the case
is resolved; the owner answers the survey from the link in the case's event; GET
/quality/contact shows it. Along the way: a viewer key cannot send commands, the car refuses a
replayed, a tampered and an expired command, and a car out of coverage lets its command
expire.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from care import commands as policy
from care.signing import load_private_key, sign
from ingest.mqtt import make_client
from ownercare import embedded
from storage.store import Store
from tests.apikit import headers_for
from tests.end_to_end.test_end_to_end import wait_for

# A few simulated days before the 12 V detector is sure, on a machine that may be busy.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
# At 3600x a worker running behind the simulator by seconds is hours of event time behind
# the cars: the commands get a validity that covers that (the car's clock is the truth).
TTL_S = 3 * 86_400

SPEED = 3600  # one simulated hour per second


class Watcher:
    """Every command and command result on the broker, as the cars and the cloud see them."""

    def __init__(self, mqtt_url: str) -> None:
        self.seen: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.client, connect = make_client(mqtt_url, f"watch-{os.getpid()}", "3.1.1")
        self.client.on_connect = lambda c, *_a: c.subscribe(
            [("vehicles/+/commands", 1), ("vehicles/+/commands/result", 1)])
        self.client.on_message = lambda _c, _u, m: self.seen.put(
            (m.topic, orjson.loads(m.payload)))
        self.client.connect(**connect)
        self.client.loop_start()
        self.log: list[tuple[str, dict[str, Any]]] = []

    def wait(self, match: Any, timeout: float) -> dict[str, Any]:
        for topic, body in self.log:
            if match(topic, body):
                return body
        deadline = timeout
        while deadline > 0:
            try:
                topic, body = self.seen.get(timeout=1)
            except queue.Empty:
                deadline -= 1
                continue
            self.log.append((topic, body))
            if match(topic, body):
                return body
        raise AssertionError(f"no matching MQTT message in {timeout}s; saw {self.log[-10:]}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_remote_battery_test_confirms_the_alert_and_the_owner_rates_the_contact(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    api_port, mqtt_port = embedded.free_port(), embedded.free_port()
    truth_path = tmp_path / "truth.json"
    cmd = [sys.executable, "-m", "ownercare", "run", "--vehicles", "6", "--chargers", "1",
           "--seed", "5", "--speed", str(SPEED), "--duration", "40d",
           "--parked-interval", "900", "--faults", "weak_12v:1,silent:1",
           "--truth", str(truth_path), "--state-dir", str(state), "--api-port", str(api_port),
           "--mqtt-port", str(mqtt_port), "--kafka-port", str(embedded.free_port())]
    env = {**os.environ, "OWNERCARE_PARTITIONS": "2",
           "OWNERCARE_WORKER_APP_ID": f"remote-{os.getpid()}"}
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    api = f"http://127.0.0.1:{api_port}"
    watcher = None
    try:
        wait_for(lambda: (state / "run.json").exists(), 120, "run.json", proc)
        watcher = Watcher(f"mqtt://127.0.0.1:{mqtt_port}")
        store = Store(f"sqlite:///{state / 'ownercare.db'}")
        agent, viewer = headers_for(store, "agent", "ann"), headers_for(store, "viewer", "vic")
        run_key = json.loads((state / "run.json").read_text())["api_key"]
        admin = {"Authorization": f"Bearer {run_key}"}
        truth = json.loads(truth_path.read_text())
        weak_vin = next(t["vin"] for t in truth if t["fault"] == "weak_12v")
        silent = next(t for t in truth if t["fault"] == "silent")

        def get(path: str, headers: dict[str, str] = agent) -> Any:
            resp = httpx.get(f"{api}{path}", headers=headers, timeout=10)
            assert resp.status_code == 200, resp.text
            return resp.json()

        def post(path: str, body: dict[str, Any], headers: dict[str, str] = agent,
                 status: int = 201) -> Any:
            resp = httpx.post(f"{api}{path}", headers=headers, json=body, timeout=10)
            assert resp.status_code == status, resp.text
            return resp.json()

        # --- the alert opens a case; a viewer may not send commands ---------------------
        alert = wait_for(lambda: next(iter(get("/alerts?type=weak_12v_battery")["items"]), None),
                         1200, "a weak 12 V battery alert", proc)
        assert alert["asset_id"] == weak_vin
        (case,) = get(f"/cases?asset_id={weak_vin}")["items"]
        post(f"/cases/{case['id']}/commands", {"kind": "battery_test"}, viewer, 403)

        # --- the agent's battery test, there and back ------------------------------------
        command = post(f"/cases/{case['id']}/commands", {"kind": "battery_test", "id": "bt-1",
                                                         "ttl_s": TTL_S})
        assert command["alert_id"] == alert["id"]
        done = wait_for(lambda: (lambda c: c if c["state"] in policy.FINAL else None)(
            get("/commands/bt-1")), 600, "the battery test's result", proc)
        assert done["state"] == "failed", done
        assert done["result"]["passed"] is False
        assert done["result"]["voltage_under_load"] < policy.PASS_V
        assert done["verdict"] == "confirmed"
        assert [e["state"] for e in done["events"]] == [
            "requested", "sent", "acknowledged", "failed"]
        trail = [e["detail"]["state"] for e in get(f"/cases/{case['id']}")["events"]
                 if e["action"] == "command"]
        assert trail == ["requested", "sent", "acknowledged", "failed"]
        labelled = get(f"/cases/{case['id']}")["alerts"]
        assert [(a["id"], a["outcome"]) for a in labelled if a["id"] == alert["id"]] == [
            (alert["id"], "confirmed")]

        # --- the car refuses a replayed, a tampered and an expired command ---------------
        sent = watcher.wait(lambda t, b: t.endswith("/commands")
                            and b.get("command", {}).get("id") == "bt-1", 30)
        publisher, connect = make_client(f"mqtt://127.0.0.1:{mqtt_port}", "attacker", "3.1.1")
        publisher.connect(**connect)
        publisher.loop_start()
        topic = f"vehicles/{weak_vin}/commands"
        publisher.publish(topic, orjson.dumps(sent), qos=1).wait_for_publish(10)
        tampered = json.loads(json.dumps(sent))
        tampered["command"].update(kind="clear_dtc", id="evil-1", nonce="fresh")
        publisher.publish(topic, orjson.dumps(tampered), qos=1).wait_for_publish(10)
        key = load_private_key((state / "keys" / "ota-signing.pem").read_bytes())
        stale = policy.command_body(command_id="old-1", vin=weak_vin, kind="wake",
                                    nonce="stale-nonce", issued_at=sent["command"]["issued_at"]
                                    - 2 * policy.DEFAULT_TTL_MS,
                                    expires_at=sent["command"]["issued_at"] - 1)
        publisher.publish(topic, orjson.dumps(sign(key, stale, policy.ENVELOPE_FIELD)),
                          qos=1).wait_for_publish(10)
        publisher.disconnect()
        publisher.loop_stop()
        refused = {}
        for reason in ("replayed", "bad_signature", "expired"):
            body = watcher.wait(lambda t, b, r=reason: t == f"{topic}/result"
                                and b.get("status") == "refused" and b.get("reason") == r, 120)
            refused[reason] = body["command_id"]  # the car's clock decides "expired"
        assert refused == {"replayed": "bt-1", "bad_signature": "unverified",
                           "expired": "old-1"}
        assert get("/commands/bt-1")["state"] == "failed"  # a replay changes nothing

        # --- a car out of coverage: its command expires ----------------------------------
        wait_for(lambda: (get("/fleet")["fleet_now_event_ms"] or 0) > silent["onset_ts"],
                 600, "the silent car's onset", proc)
        post(f"/vehicles/{silent['vin']}/commands", {"kind": "wake", "id": "lost-1",
                                                     "ttl_s": 3600})
        lost = wait_for(lambda: (lambda c: c if c["state"] in policy.FINAL else None)(
            get("/commands/lost-1")), 600, "the lost command to expire", proc)
        assert lost["state"] == "expired", lost

        # --- resolved; the owner answers; /quality shows it ------------------------------
        for to in ("acknowledged", "owner_contacted", "resolved"):
            resolved = post(f"/cases/{case['id']}/transition", {"to": to}, status=200)
        survey = resolved["events"][-1]["detail"]["survey"]
        page = httpx.get(f"{api}{survey['path']}", timeout=10)
        assert page.status_code == 200
        assert 'name="score"' in page.text
        answer = httpx.post(f"{api}{survey['path']}", data={"score": "4", "comment": "quick"},
                            timeout=10)
        assert answer.status_code == 200
        assert "Thank you" in answer.text
        contact = get("/quality/contact", viewer)
        assert contact["answers"] == 1
        assert contact["satisfaction"]["alert_type"] == [
            {"key": "weak_12v_battery", "answers": 1, "mean_score": 4.0, "csat": 1.0}]
        assert [t["channel"] for t in contact["timings"]] == ["remote"]
        (precision,) = [p for p in contact["precision"] if p["alert_type"] == "weak_12v_battery"]
        assert (precision["command_labels"], precision["precision_after"]) == (1, 1.0)
        assert get("/tasks", admin)["items"] == []  # a 4 needs no follow-up
    finally:
        if watcher is not None:
            watcher.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()

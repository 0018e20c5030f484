"""`ownercare run` with OWNERCARE_OTA_SIGNING_KEY, as real processes: the stack signs with
that key and its simulated cars accept the offers (none refused bad_signature); a pinned
public key of another pair is refused before anything starts, naming both fingerprints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ota.manifest import generate_keypair, load_private_key, load_public_key
from ownercare import embedded
from ownercare.ota_keys import fingerprint
from tests.end_to_end.test_end_to_end import wait_for

pytestmark = pytest.mark.integration
PROGRESSED = {"downloading", "downloaded", "installing", "succeeded"}


def key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    private_pem, public_pem = generate_keypair()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pem").write_bytes(private_pem)
    (directory / f"{name}.pub.pem").write_bytes(public_pem)
    return directory / f"{name}.pem", directory / f"{name}.pub.pem"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWNERCARE_")}
    return {**env, **extra}


def ports() -> list[str]:
    return ["--api-port", str(embedded.free_port()), "--mqtt-port",
            str(embedded.free_port()), "--kafka-port", str(embedded.free_port())]


def test_a_public_key_that_does_not_match_the_signing_key_stops_the_run(
        tmp_path: Path) -> None:
    signing, _ = key_pair(tmp_path / "secrets", "ota")
    _, other = key_pair(tmp_path / "secrets", "other")
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "ownercare", "run", "--state-dir", str(state),
         "--ota-public-key", str(other), *ports()], capture_output=True, text=True,
        timeout=120, env=clean_env(OWNERCARE_OTA_SIGNING_KEY=str(signing)))
    assert result.returncode == 2, result.stderr
    want = fingerprint(load_private_key(signing.read_bytes()).public_key())
    got = fingerprint(load_public_key(other.read_bytes()))
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"ownercare run: --ota-public-key {other} (fingerprint {got}) "
                           f"does not match OWNERCARE_OTA_SIGNING_KEY {signing} "
                           f"(fingerprint {want})"), line
    assert not state.exists()  # refused before the state dir was touched


@pytest.mark.timeout(420)
def test_the_stack_signs_with_the_configured_key_and_the_cars_accept(tmp_path: Path) -> None:
    signing, public = key_pair(tmp_path / "secrets", "ota")
    state = tmp_path / "state"
    env = clean_env(OWNERCARE_OTA_SIGNING_KEY=str(signing))
    cmd = [sys.executable, "-m", "ownercare", "run", "--vehicles", "3", "--chargers", "1",
           "--speed", "3600", "--state-dir", str(state), "--ota-public-key", str(public),
           *ports()]
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: (state / "run.json").exists(), 120, "run.json", proc)
        info = json.loads((state / "run.json").read_text())
        api, auth = info["api_url"], {"Authorization": f"Bearer {info['api_key']}"}
        assert not (state / "keys" / "ota-signing.pem").exists()  # no key of its own

        def cars() -> list[str]:
            items = httpx.get(f"{api}/vehicles?limit=50", headers=auth, timeout=10).json()
            vins = [c["vin"] for c in items.get("items", [])]
            return vins if len(vins) == 3 else []

        vins = wait_for(cars, 120, "3 cars reporting", proc)
        release = subprocess.run(
            [sys.executable, "-m", "ownercare", "ota", "release", "--simulated",
             "--component", "bms", "--version", "9.0.0"], capture_output=True, text=True,
            timeout=60, env={**env, "OWNERCARE_STATE_DIR": str(state)})
        assert release.returncode == 0, release.stderr
        campaign = httpx.post(f"{api}/ota/campaigns", headers=auth, timeout=10, json={
            "name": "configured key", "release_id": release.stdout.strip(),
            "targets": {"vins": vins}, "waves": [{"percent": 100}], "soak_s": 0,
            "gate": {"min_soc_percent": 0, "min_12v_volts": 0, "allow_while_charging": True,
                     "blocking_alert_types": []}})
        assert campaign.status_code == 201, campaign.text
        cid = campaign.json()["id"]
        started = httpx.post(f"{api}/ota/campaigns/{cid}/start", headers=auth, timeout=10)
        assert started.status_code == 200, started.text

        def progressed() -> list[dict[str, Any]]:
            rows = httpx.get(f"{api}/ota/campaigns/{cid}/vehicles", headers=auth,
                             timeout=10).json()
            return rows if any(r["state"] in PROGRESSED for r in rows) else []

        rows = wait_for(progressed, 240, "a car accepting the signed offer", proc)
        for vin in vins:
            record = httpx.get(f"{api}/vehicles/{vin}/ota", headers=auth, timeout=10).json()
            assert [r for r in record["refusals"] if r["reason"] == "bad_signature"] == [], \
                record
        assert all(r["refusal"] is None or r["refusal"]["reason"] != "bad_signature"
                   for r in rows), rows
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()

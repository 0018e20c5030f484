"""docs/ota-walkthrough.md, run as a reader runs it: `ownercare run` with the small fleet the
page suggests and the OTA settings `make run` has (none set), then every ```sh block of the
page, verbatim and in order, in one bash at the repository root, with only the variable the
page tells the reader about (OWNERCARE_STATE_DIR) pointing at this run. The campaign, created
with the default settings, must complete with every car updated.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ownercare import embedded
from tests.end_to_end.test_end_to_end import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "ota-walkthrough.md"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)


def page_blocks() -> list[str]:
    return SH_BLOCK.findall(PAGE.read_text())


def small_fleet() -> list[str]:
    """The `make run RUN_ARGS="..."` the page suggests for a quick run."""
    found = re.search(r'`make run RUN_ARGS="([^"]+)"`', PAGE.read_text())
    assert found, "the page suggests no small fleet"
    return shlex.split(found.group(1))


def test_the_page_has_the_steps_it_promises() -> None:
    script = "\n".join(page_blocks())
    for step in ("ownercare ota release --simulated", "POST \"$API/ota/campaigns\"",
                 "/ota/campaigns/$CAMPAIGN/start", "$API/ota/campaigns/$CAMPAIGN\"",
                 "$API/ota/vehicles/$VIN"):
        assert step in script, step
    assert "make run" in PAGE.read_text()


@pytest.mark.timeout(420)
def test_the_ota_walkthrough_runs_as_written(tmp_path: Path) -> None:
    state = tmp_path / "state"
    api_port = embedded.free_port()
    fleet = small_fleet()
    cmd = [sys.executable, "-m", "ownercare", "run", *fleet, "--state-dir", str(state),
           "--api-port", str(api_port), "--mqtt-port", str(embedded.free_port()),
           "--kafka-port", str(embedded.free_port())]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWNERCARE_")}
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: (state / "run.json").exists(), 120, "run.json", proc)
        script = "set -euo pipefail\n" + "\n".join(page_blocks())
        started = time.monotonic()
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                              env={**env, "OWNERCARE_STATE_DIR": str(state)}, timeout=300)
        took = time.monotonic() - started
        assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
        # The page promises "a minute or two" at 3600×.
        assert took < 240, f"the walkthrough took {took:.0f} s:\n{done.stdout[-4000:]}"

        # What the page showed, checked at the API: completed, every targeted car updated.
        info = json.loads((state / "run.json").read_text())
        auth = {"Authorization": f"Bearer {info['api_key']}"}
        (listed,) = httpx.get(f"{info['api_url']}/ota/campaigns", headers=auth,
                              timeout=10).json()["items"]
        campaign = httpx.get(f"{info['api_url']}/ota/campaigns/{listed['id']}", headers=auth,
                             timeout=10).json()
        assert campaign["state"] == "completed", campaign
        waves = campaign["progress"]["waves"]
        assert {s for wave in waves.values() for s in wave} == {"succeeded"}, waves
        cars = int(fleet[fleet.index("--vehicles") + 1])
        assert sum(sum(wave.values()) for wave in waves.values()) == cars
        # The page's last block counted the cars' own "installed" log lines.
        assert done.stdout.strip().splitlines()[-1] == str(cars), done.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()

"""The worker's generic detector (``OWNERCARE_GENERIC_DETECTOR``, in the ``diagnose`` agent):
a worker killed mid-stream and restarted stores exactly the alerts of an uninterrupted offline
run, ``signal_drift`` included, from its own changelogged table.

What a restart met here (it depends on timing, so not every run meets it): records Faust read
during its recovery and never delivered, at the end of a partition (``worker/tail_guard.py``),
and a generic table restored from a changelog that ends inside a checkpoint
(``worker.generic.VouchedTable``)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from diagnostics.generic_signals import ALERT_TYPE, GenericSignals
from diagnostics.pipeline import VehiclePipeline
from ingest.kafka import ensure_topics
from storage.store import Store
from tests.diagnostics.test_generic_signals import car
from tests.stackkit import bootstrap_of, start_service, wait_for_log
from tests.worker.test_worker_restart import (
    PARTITIONS,
    assert_settles_to,
    produce,
    summary,
    wait_for_commits,
)

pytestmark = pytest.mark.integration
VINS = ("WCRGE1B54PA241856", "WCRGE3A19TK025332", "WCRGE2C74MR747078")


def fleet() -> tuple[list[list[dict[str, Any]]], dict[str, tuple[Any, ...]]]:
    """Batches of three cars (two with a leaking tyre) and the alerts of an offline run."""
    records: list[dict[str, Any]] = []
    for vin, leak in zip(VINS, (6.0, 9.0, None), strict=True):
        records += [{**r, "id": vin} for r in car(16, leak_from=leak, seed=len(records))]
    records.sort(key=lambda r: (r["ts"], r["id"]))
    vehicles, generic = VehiclePipeline(), GenericSignals()
    vstates: dict[str, Any] = {}
    gstates: dict[str, Any] = {}
    expected: dict[str, tuple[Any, ...]] = {}
    for record in records:
        for alert in [*vehicles.process([record], vstates)[0],
                      *generic.process([record], gstates)[0]]:
            expected[alert["id"]] = summary(alert)
    batches = [records[i:i + 300] for i in range(0, len(records), 300)]
    return batches, expected


def test_killed_worker_resumes_the_generic_detector_without_losing_an_alert(
    kafka_url: str, tmp_path: Path
) -> None:
    batches, expected = fleet()
    drifting = {asset for asset, *_ in expected.values()}
    assert drifting >= set(VINS[:2])
    asyncio.run(ensure_topics(bootstrap_of(kafka_url), PARTITIONS))
    db = tmp_path / "alerts.sqlite"
    env = {"OWNERCARE_KAFKA_URL": kafka_url, "OWNERCARE_PARTITIONS": str(PARTITIONS),
           "OWNERCARE_DATABASE_URL": f"sqlite:///{db}", "OWNERCARE_STATE_DIR": str(tmp_path),
           "OWNERCARE_WORKER_APP_ID": f"generic-{os.getpid()}",
           "OWNERCARE_GENERIC_DETECTOR": "true", "OWNERCARE_STATE_CHECKPOINT_S": "1"}
    half = len(batches) // 2
    first = start_service("worker", env, tmp_path / "worker1.log")
    try:
        asyncio.run(produce(kafka_url, batches[:half]))
        # The first half holds tyre events but no alert yet: the second worker must continue
        # from the changelogged generic states to raise the alerts at the same times.
        asyncio.run(wait_for_commits(kafka_url, env["OWNERCARE_WORKER_APP_ID"], 240))
        wait_for_log(tmp_path / "worker1.log", "generic_state_writes=", 120, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    asyncio.run(produce(kafka_url, batches[half:]))
    second = start_service("worker", env, tmp_path / "worker2.log")
    try:
        assert_settles_to(Store(f"sqlite:///{db}"), set(VINS), expected)
        rows, _ = Store(f"sqlite:///{db}").list_alerts(limit=500)
        assert {row["type"] for row in rows if row["asset_id"] in VINS} >= {ALERT_TYPE}
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)

"""The embedded Kafka's changelogs are trimmed below the worker's refresh marks, and a worker
restarted on the trimmed changelog still holds every detector state.

A real worker on Tansu (disk storage) refreshes its tables every two seconds
(``worker/checkpoint.py``) and commits the marks (``worker/changelog_marks.py``); the sweep of
``ownercare run`` (``ownercare/retention.py``) then deletes the changelog's old batches. After a
``kill -9`` the next worker recovers from what is left, and the alerts of the whole run are
exactly an uninterrupted run's: a weakening 12 V battery is only seen with the days before.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from ingest.kafka import ensure_topics
from ownercare import embedded
from ownercare.embedded_kafka import EmbeddedKafka
from ownercare.retention import batches, committed, partitions
from storage.store import Store
from tests.ownercare.test_durable_restart import (
    PARTITIONS,
    cluster_dir,
    wait_for_offsets,
    worker_env,
)
from tests.stackkit import start_service, wait_for_log
from tests.worker.test_worker_restart import assert_settles_to, fleet_batches, produce

pytestmark = pytest.mark.integration


def changelog_starts(state: Path, app_id: str) -> dict[int, int]:
    """The base offset of the oldest batch each partition of the vehicle table keeps."""
    topic = f"{app_id}-vehicle-diagnostics-changelog"
    return {tp[1]: found[0].base for tp, records in partitions(cluster_dir(state))
            if tp[0] == topic and (found := batches(records))}


def marks(state: Path, app_id: str) -> dict[int, int]:
    topic = f"{app_id}-vehicle-diagnostics-changelog"
    return {tp[1]: offset for tp, offset in committed(cluster_dir(state)).items()
            if tp[0] == topic}


def test_a_worker_recovers_every_state_from_a_trimmed_changelog(tmp_path: Path) -> None:
    batches_, expected = fleet_batches(seed=37)
    fleet_vins = {record["id"] for batch in batches_ for record in batch}
    state, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    port = embedded.free_port()
    app_id = f"trim-{os.getpid()}"
    env = worker_env(tmp_path, port, app_id) | {"OWNERCARE_CHANGELOG_REFRESH_S": "2"}
    half = len(batches_) // 2
    # No retention window and no grace: the sweep deletes whatever the rules allow.
    kafka = EmbeddedKafka(port, "disk", state, logs, 0, retention_h=0, retention_grace_s=0)
    env.update(kafka.service_env())
    kafka.start()
    second = None
    try:
        asyncio.run(ensure_topics(f"127.0.0.1:{port}", PARTITIONS))
        first = start_service("worker", env, tmp_path / "worker1.log")
        ends: dict[int, int] = {}
        for batch in batches_[:half]:
            ends.update(asyncio.run(produce(env["OWNERCARE_KAFKA_URL"], [batch])))
            time.sleep(1.2)  # a steady stream: checkpoints and refreshes fall in between
        wait_for_log(tmp_path / "worker1.log", "alert_emitted", 180, first)
        wait_for_offsets(state, app_id, ends)
        wait_for_log(tmp_path / "worker1.log", "changelog_marks_committed", 60, first)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kafka.sweep()  # what `ownercare run` does once a minute
            trimmed = changelog_starts(state, app_id)
            if any(start > 0 for start in trimmed.values()):
                break
            time.sleep(1)
        held = marks(state, app_id)
        assert any(start > 0 for start in trimmed.values()), (trimmed, held)
        # Never past a mark: what lies above it may be some key's only record.
        assert all(start <= held.get(p, 0) for p, start in trimmed.items()), (trimmed, held)
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        asyncio.run(produce(env["OWNERCARE_KAFKA_URL"], batches_[half:]))
        second = start_service("worker", env, tmp_path / "worker2.log")
        assert_settles_to(Store(env["OWNERCARE_DATABASE_URL"]), fleet_vins, expected)
    finally:
        if second is not None:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
        kafka.stop()

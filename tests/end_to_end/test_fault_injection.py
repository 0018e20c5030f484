"""kill -9 through a real ``ownercare run``: what supervision keeps, and what it cannot.

The labelled every-fault fleet runs with the same seed (so the same message stream) once left
alone and then twice more against it, each while the fleet publishes (``ownercare.faults``,
which ``ownercare faults`` runs too): once with its bridge, worker, view writer and API killed
with SIGKILL in turn, once with its embedded brokers killed in turn: the MQTT broker, Tansu
and Tansu's S3 server. All three runs keep the embedded Kafka's log on disk, the default. A
killed run must lose no record (the distinct records in Kafka are every message the simulator
sent and the broker acknowledged) and end with the same alerts, by asset, type and first_seen
event time: none lost, none duplicated, none false. A silence alert's first_seen is the first
sweep boundary past its threshold however the records were batched, so it is compared exactly
too; what a restart could do to the silence detectors (deliver records out of order) is
asserted as well.

With the embedded Kafka in memory (``OWNERCARE_EMBEDDED_KAFKA_STORAGE=memory``) a kill -9 of
Tansu loses what it held. The contract the stack offers there, asserted last: it stops
cleanly with one line and no orphans, the database keeps every alert, and ``ownercare run
--resume`` on the same state starts again and detects on new data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ownercare import faults
from ownercare.faults import RunResult

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

SCENARIO = faults.Scenario(kafka_storage="disk")
BROKERS = tuple(faults.BROKER_TARGETS)  # mqtt, tansu, kafka-s3


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The uninterrupted run both killed runs are compared with."""
    run = faults.run_fleet(SCENARIO, tmp_path_factory.mktemp("faults"), "baseline")
    # The premise: left alone, the fleet's faults are found and no healthy asset is alerted.
    assert run.sent > 0
    assert len(run.distinct) == run.sent
    assert len(run.alerts) >= len(run.faulty_assets) > 0
    assert [a for a in run.alerts if a["asset_id"] not in run.faulty_assets] == []
    return run


def test_killed_services_lose_no_record_and_change_no_alert(baseline: RunResult,
                                                            tmp_path: Path) -> None:
    killed = faults.run_fleet(SCENARIO, tmp_path, "killed", faults.TARGETS)
    figures = faults.compare(baseline, killed)
    assert [(k["target"], k["during_publishing"], k["survived"]) for k in figures["kills"]] \
        == [(target, True, True) for target in faults.TARGETS]
    assert figures["restarts"] == {"worker": 1, "bridge": 1, "api": 1, "simulator": 0}
    assert_nothing_lost_and_the_same_alerts(baseline, killed, figures)


def test_killed_brokers_lose_no_record_and_change_no_alert(baseline: RunResult,
                                                           tmp_path: Path) -> None:
    killed = faults.run_fleet(SCENARIO, tmp_path, "brokers-killed", BROKERS)
    figures = faults.compare(baseline, killed)
    assert [(k["target"], k["during_publishing"], k["survived"]) for k in figures["kills"]] \
        == [(target, True, True) for target in BROKERS]
    # The services rode out the outages by reconnecting: none of them crashed.
    assert figures["restarts"] == {"worker": 0, "bridge": 0, "api": 0, "simulator": 0}
    assert_nothing_lost_and_the_same_alerts(baseline, killed, figures)


def assert_nothing_lost_and_the_same_alerts(baseline: RunResult, killed: RunResult,
                                            figures: dict[str, Any]) -> None:
    assert (figures["messages_sent"], figures["records_lost"],
            figures["records_missing_vs_baseline"], figures["records_extra_vs_baseline"]) \
        == (baseline.sent, 0, 0, 0)
    # Redelivered after a restart, yet in order: a returning bridge gets what the broker
    # queued for it before anything newer (the silence detectors' clock depends on it).
    assert (figures["baseline_records_out_of_order"], figures["records_out_of_order"]) == (0, 0)
    assert {alert: figures[alert] for alert in ("alerts_lost", "alerts_duplicated",
                                                "alerts_false")} \
        == {"alerts_lost": 0, "alerts_duplicated": 0, "alerts_false": 0}, (
        sorted(map(faults.alert_key, baseline.alerts)),
        sorted(map(faults.alert_key, killed.alerts)))
    assert figures["alerts_equal"] == figures["alerts_baseline"] == len(baseline.alerts)
    assert figures["exit_codes"] == [0, 0]
    assert figures["orphans"] == []


def test_a_killed_kafka_stops_the_stack_cleanly_and_a_resumed_run_detects_again(
        tmp_path: Path) -> None:
    figures = faults.kill_kafka(faults.KAFKA_SCENARIO, tmp_path)
    assert figures["exit_code"] == 1
    assert figures["stop_line"].startswith(
        "ownercare run: the embedded Kafka broker (Tansu) exited; its log was in memory "), \
        figures
    assert not figures["traceback"]
    assert figures["orphans"] == []
    # What the database held survives; what only Kafka held (unprocessed records, detector
    # state) does not, and the stack says so by stopping rather than running on without it.
    before, after = figures["alerts_in_database_before_after"]
    assert after == before >= 1
    assert figures["alerts_kept"] == figures["alerts_before"]
    assert figures["resume_detects_new_data"] is True
    assert figures["resumed_exit_code"] == 0

"""kill -9 through a real ``ownercare run``: what supervision keeps, and what it cannot.

The labelled every-fault fleet runs twice with the same seed (so the same message stream):
once left alone, once with its bridge, worker, view writer and API killed with SIGKILL in turn
while the fleet publishes (``ownercare.faults``, which ``ownercare faults`` runs too). The
killed run must lose no record (the distinct records in Kafka are every message the simulator
sent and the broker acknowledged) and end with the same alerts, by asset, type and first_seen
event time: none lost, none duplicated, none false. A silence alert's first_seen is a sweep
boundary that depends on how the bridge batched the partition's reports, which varies between
any two runs, so it is compared within ``faults.SWEEP_TOLERANCE_MS``; what a restart could do
to the silence detectors (deliver records out of order) is asserted exactly instead.

Both runs keep the embedded Kafka (Tansu) in memory (``OWNERCARE_EMBEDDED_KAFKA_STORAGE=
memory``), where a kill -9 of Tansu loses what it held. The contract the stack offers there,
asserted below: it stops cleanly with one line and no orphans, the database keeps every
alert, and ``ownercare run --resume`` on the same state starts again and detects on new data.
(On disk, Tansu and its S3 server are restarted by ``ownercare.embedded_kafka``: its own
tests, and ``ownercare faults --kafka-storage disk``, which kills them in turn as well.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ownercare import faults

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]


def test_killed_services_lose_no_record_and_change_no_alert(tmp_path: Path) -> None:
    scenario = faults.Scenario()
    baseline = faults.run_fleet(scenario, tmp_path, "baseline")
    # The premise: left alone, the fleet's faults are found and no healthy asset is alerted.
    assert baseline.sent > 0
    assert len(baseline.distinct) == baseline.sent
    assert len(baseline.alerts) >= len(baseline.faulty_assets) > 0
    assert [a for a in baseline.alerts if a["asset_id"] not in baseline.faulty_assets] == []

    killed = faults.run_fleet(scenario, tmp_path, "killed", faults.TARGETS)
    figures = faults.compare(baseline, killed)
    assert [(k["target"], k["during_publishing"], k["survived"]) for k in figures["kills"]] \
        == [(target, True, True) for target in faults.TARGETS]
    assert figures["restarts"] == {"worker": 1, "bridge": 1, "api": 1, "simulator": 0}
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

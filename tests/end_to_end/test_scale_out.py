"""Scale-out is correct: more replicas, joining, dying and returning, change no alert.

One labelled fleet (same seed, so the same message stream) runs twice on real brokers
(Mosquitto, the embedded Kafka, PostgreSQL) with every service a process of its own
(``tests.scalekit``): once as one bridge, one worker and one API, and once with two workers
joined by a third mid-run while the first is killed with SIGKILL, two bridges each forwarding
its shard of the fleet (one killed with SIGKILL and started again), and two API replicas. The
scaled run must lose no record (the distinct records in Kafka are every message the
simulator sent and the broker acknowledged), put no record into Kafka behind a newer one of
its asset, and end with exactly the single-process run's alerts, by asset, type and first_seen event
time: none lost, none duplicated, none false. Both API replicas serve them all; the alert
stream (SSE) of each replica sends every alert change exactly once; and a webhook registered
with the two replicas, whose dispatchers compete for the same outbox, receives each event
exactly once.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ownercare.faultrun import Scenario
from ownercare.faults import alert_key
from tests.conftest import PostgresCluster
from tests.scalekit import (
    Cluster,
    StreamTap,
    WebhookReceiver,
    reordered_records,
    truth_assets,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SCENARIO = Scenario(vehicles=24, chargers=8, seed=4, days=20, speed=15000)
# Faust's assignor keeps a member's partitions up to ceil(partitions / members) each: with 4
# partitions two workers keep two each and a third gets none; with 6 each of three gets two.
PARTITIONS = 6


@dataclass
class Outcome:
    sent: int
    distinct: set[bytes] = field(repr=False)
    alerts: list[dict[str, Any]] = field(repr=False)
    faulty: set[str]
    replicas_alerts: list[list[dict[str, Any]]] = field(repr=False)
    codes: dict[str, int | None]
    orphans: list[int]
    notes: dict[str, Any]
    reordered: int


def run(cluster: Cluster, apis: list[str], during: Callable[[Cluster], dict[str, Any]]
        ) -> Outcome:
    truth = cluster.dir / "truth.json"
    try:
        cluster.start_simulator(truth)
        notes = during(cluster)
        alerts = cluster.settled_alerts(apis[0])
        others = [cluster.alerts(api) or [] for api in apis[1:]]
        sent = cluster.simulator_sent() or 0
        _total, distinct, _late = cluster.records()
        reordered = reordered_records(cluster.kafka_bootstrap)
    finally:
        codes = cluster.stop()
    return Outcome(sent, distinct, alerts, truth_assets(truth), others, codes,
                   cluster.orphans(), notes, reordered)


@pytest.fixture(scope="module")
def baseline(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    cluster = Cluster(tmp_path_factory.mktemp("scale"), postgres.new_database(), SCENARIO,
                      "single", PARTITIONS)
    try:
        cluster.start_worker("worker-1")
        cluster.start_bridge("bridge-1")
        cluster.start_api("api-1")
    except BaseException:
        cluster.stop()
        raise
    outcome = run(cluster, ["api-1"], lambda _c: {})
    # The premise: left alone, the fleet's faults are found and no healthy asset is alerted.
    assert outcome.sent > 0
    assert len(outcome.distinct) == outcome.sent
    assert outcome.reordered == 0
    assert len(outcome.alerts) >= len(outcome.faulty) > 0
    assert [a for a in outcome.alerts if a["asset_id"] not in outcome.faulty] == []
    return outcome


def delivered(cluster: Cluster, receiver: WebhookReceiver, hook: str
              ) -> list[dict[str, Any]] | None:
    """The webhook's deliveries once none is pending and the receiver holds at least as
    many requests."""
    rows = cluster.pages("api-1", f"/webhooks/{hook}/deliveries")
    if rows is None or any(r["state"] != "delivered" for r in rows) \
            or len(receiver.received) < len(rows):
        return None
    return rows


def sees_all(tap: StreamTap, alert_ids: set[str]) -> bool:
    return alert_ids <= tap.alert_ids()


def churn(cluster: Cluster) -> dict[str, Any]:
    """While the fleet publishes: a third worker joins, the first is killed, a bridge is
    killed and started again (same client id and shard, so its persistent session and what
    the broker queued for it are its own again)."""
    notes: dict[str, Any] = {}
    cluster.wait_for(lambda: cluster.fleet_done(0.2), "a fifth of the fleet's span", 600)
    notes["joined_while_publishing"] = cluster.simulator_sent() is None
    cluster.start_worker("worker-3")
    joined = cluster.procs["worker-3"].pid
    cluster.wait_for(lambda: (cluster.metric("api-1", "worker_records_total",
                                             joined) or 0) > 0,
                     "records processed by the worker that joined", 300, "worker-3")
    cluster.wait_for(lambda: cluster.fleet_done(0.45), "half the fleet's span", 600)
    notes["worker_killed_while_publishing"] = cluster.simulator_sent() is None
    cluster.kill("worker-1")
    cluster.wait_for(lambda: cluster.fleet_done(0.65), "two thirds of the fleet's span", 600)
    notes["bridge_killed_while_publishing"] = cluster.simulator_sent() is None
    cluster.kill("bridge-1")
    cluster.start_bridge("bridge-1", "1/2")
    return notes


class AlertsDiffer(AssertionError):
    """The scaled run's alerts are not the single-process run's."""


def test_three_workers_two_bridges_and_two_apis_find_exactly_the_single_process_alerts(
        baseline: Outcome, postgres: PostgresCluster, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, postgres.new_database(), SCENARIO, "scaled", PARTITIONS)
    receiver = WebhookReceiver()
    taps: list[StreamTap] = []
    deliveries: list[dict[str, Any]] = []

    def churn_and_deliver(c: Cluster) -> dict[str, Any]:
        notes = churn(c)
        c.settled_alerts("api-1")
        deliveries.extend(c.wait_for(lambda: delivered(c, receiver, hook),
                                     "every webhook delivery", 300))
        final = {a["id"] for a in c.alerts("api-1") or []}
        for tap in taps:
            c.wait_for(functools.partial(sees_all, tap, final),
                       f"every alert on {tap.api}'s stream", 120)
        return notes

    try:
        for name in ("worker-1", "worker-2"):
            cluster.start_worker(name)
        for k in (1, 2):
            cluster.start_bridge(f"bridge-{k}", f"{k}/2")
        for name in ("api-1", "api-2"):
            cluster.start_api(name)
        hook = cluster.post("api-1", "/webhooks", {"url": receiver.url,
                                                   "events": ["alert.*"]})["id"]
        taps = [StreamTap(cluster, api) for api in ("api-1", "api-2")]
        for tap in taps:
            tap.start()
    except BaseException:
        cluster.stop()
        raise
    try:
        scaled = run(cluster, ["api-1", "api-2"], churn_and_deliver)
    finally:
        for tap in taps:
            tap.stop()
        receiver.close()

    assert scaled.notes == {"joined_while_publishing": True,
                            "worker_killed_while_publishing": True,
                            "bridge_killed_while_publishing": True}
    assert (scaled.sent, len(scaled.distinct)) == (baseline.sent, baseline.sent)
    assert scaled.distinct == baseline.distinct
    # Each asset's records reached Kafka in the order it sent them (redelivered copies aside).
    assert scaled.reordered == 0
    # Every replica serves the same alerts from the shared database.
    assert [sorted(map(alert_key, a)) for a in scaled.replicas_alerts] \
        == [sorted(map(alert_key, scaled.alerts))]
    # Each replica's stream sent every change of the shared change log once, in order.
    streams = [[event_id for event_id, _data in tap.events] for tap in taps]
    assert streams[0] == sorted(set(streams[0]))
    assert streams[1] == streams[0]
    assert {data["alert"]["id"] for _id, data in taps[0].events} \
        == {a["id"] for a in scaled.alerts}
    # The two dispatchers sent each webhook event once, and every alert was announced.
    sent_ids = collections.Counter(event_id for event_id, _body in receiver.received)
    assert [event_id for event_id, n in sent_ids.items() if n > 1] == []
    assert set(sent_ids) == {d["event_id"] for d in deliveries}
    assert {body["data"]["alert"]["id"] for _id, body in receiver.received} \
        == {a["id"] for a in scaled.alerts}
    # The killed processes died by SIGKILL; everything else stopped cleanly, by itself or
    # with the SIGTERM of the stop (uvicorn re-raises it after its graceful shutdown).
    assert {n: c for n, c in scaled.codes.items() if c not in (0, -9, -15)} == {}, \
        scaled.codes
    assert scaled.orphans == []
    base = collections.Counter(map(alert_key, baseline.alerts))
    got = collections.Counter(map(alert_key, scaled.alerts))
    if base != got:
        raise AlertsDiffer(f"lost: {sorted((base - got).elements())}; duplicated or false: "
                           f"{sorted((got - base).elements())}")

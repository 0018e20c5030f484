"""Care cases on a real SQLite file and a real PostgreSQL: alerts open and join cases on the
write path (idempotently), escalation, staff work with its audit trail and outcome labels,
overdue by event time, pagination, detector quality."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from care.casework import IllegalTransition, allowed
from storage import case_intake
from storage.cases import CaseConflict, CaseNotFound, CaseStore, InvalidOutcomes
from storage.models import alert_outcomes, case_alerts, case_events, cases, webhook_deliveries
from storage.outbox import create_webhook
from storage.store import Store
from tests.storage.test_store import alert, row

VIN = "WCRAAAAAAAAAAAAA1"
VIN2 = "WCRAAAAAAAAAAAAA2"
HOUR = 3_600_000
SLA = {"critical": 4.0, "warning": 24.0, "info": 72.0}
STAFF_NOW = 1_700_000_000_000


class Clock:
    """A wall clock that only moves when the test says so."""

    def __init__(self, now: int = STAFF_NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Store:
    """The store's wall clock is the test's: alert writes and staff actions read it alike."""
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db.sqlite'}", case_sla_hours=SLA, clock=clock)
    return Store(request.getfixturevalue("postgres").new_database(), case_sla_hours=SLA,
                 clock=clock)


@pytest.fixture
def desk(store: Store) -> CaseStore:
    return CaseStore(store)


def audit(desk: CaseStore, case_id: int) -> list[tuple[Any, ...]]:
    case = desk.get_case(case_id)
    assert case is not None
    return [(e["at_event_ms"], e["at_wall_ms"], e["actor"], e["action"], e["from_state"],
             e["to_state"]) for e in case["events"]]


def count(store: Store, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def open_case(store: Store, desk: CaseStore, **alert_fields: Any) -> dict[str, Any]:
    """Write an alert; return the case it opened or joined."""
    fields = {"first_seen": 1000, "last_seen": 1000, **alert_fields}
    assert store.upsert_alert(alert(**fields)) == "created"
    rows, _, _ = desk.list_cases(asset_id=fields.get("asset_id", VIN), limit=500)
    case = desk.get_case(rows[0]["id"])
    assert case is not None
    return case


# ---------------------------------------------------------------------------- intake


def test_a_new_alert_opens_a_case(store: Store, desk: CaseStore) -> None:
    case = open_case(store, desk, severity="warning", first_seen=5000, last_seen=5000)
    assert {k: case[k] for k in ("asset_kind", "asset_id", "state", "severity", "assignee",
                                 "opened_event_ms", "due_event_ms", "closed_wall_ms",
                                 "updated_wall_ms", "overdue")} == {
        "asset_kind": "vehicle", "asset_id": VIN, "state": "new", "severity": "warning",
        "assignee": None, "opened_event_ms": 5000, "due_event_ms": 5000 + 24 * HOUR,
        "closed_wall_ms": None, "updated_wall_ms": STAFF_NOW, "overdue": False}
    assert [a["id"] for a in case["alerts"]] == ["a-1"]
    assert case["alerts"][0]["outcome"] is None
    # The alert's event time, and when ownercare wrote it down: two clocks, two names.
    assert audit(desk, case["id"]) == [(5000, STAFF_NOW, "system", "opened", None, "new"),
                                       (5000, STAFF_NOW, "system", "alert_linked", None, None)]
    assert case["allowed_transitions"] == list(allowed("new"))


def test_alerts_of_one_asset_share_its_open_case(store: Store, desk: CaseStore) -> None:
    first = open_case(store, desk)
    store.upsert_alert(alert(id="tyre", type="slow_tyre_leak", first_seen=2000, last_seen=2000))
    store.upsert_alert(alert(id="other", asset_id=VIN2, first_seen=3000, last_seen=3000))
    case = desk.get_case(first["id"])
    assert case is not None
    assert [a["id"] for a in case["alerts"]] == ["a-1", "tyre"]
    assert case["opened_event_ms"] == 1000  # the first alert's event time, not the latest
    rows, _, _ = desk.list_cases()
    assert [(r["asset_id"], r["state"]) for r in rows] == [(VIN2, "new"), (VIN, "new")]


def test_a_more_severe_alert_escalates_the_case_and_moves_its_due_time(
        store: Store, desk: CaseStore) -> None:
    case = open_case(store, desk, severity="info")
    assert case["due_event_ms"] == 1000 + 72 * HOUR
    # The same alert escalating...
    store.upsert_alert(alert(severity="warning", last_seen=4000))
    # ...and a critical alert joining.
    store.upsert_alert(alert(id="cell", type="cell_drift", severity="critical",
                             first_seen=9000, last_seen=9000))
    after = desk.get_case(case["id"])
    assert after is not None
    assert after["severity"] == "critical"
    assert after["due_event_ms"] == 1000 + 4 * HOUR
    escalations = [e for e in after["events"] if e["action"] == "severity_changed"]
    assert [(e["at_event_ms"], e["actor"], e["detail"]["severity_from"],
             e["detail"]["severity_to"], e["detail"]["due_to_event_ms"])
            for e in escalations] == [
        (4000, "system", "info", "warning", 1000 + 24 * HOUR),
        (9000, "system", "warning", "critical", 1000 + 4 * HOUR)]
    # A detector de-escalating does not relax the SLA staff are working to.
    store.upsert_alert(alert(id="cell", type="cell_drift", severity="info",
                             first_seen=9000, last_seen=9500))
    calmer = desk.get_case(case["id"])
    assert calmer is not None
    assert calmer["severity"] == "critical"
    assert calmer["due_event_ms"] == 1000 + 4 * HOUR


def test_redelivery_and_replay_never_open_a_second_case(store: Store, desk: CaseStore) -> None:
    history = [alert(), alert(last_seen=2000, severity="critical"),
               alert(id="b", type="dtc", first_seen=1500, last_seen=1500),
               alert(last_seen=3000, severity="critical", status="resolved")]
    for delivery in history:
        store.upsert_alert(delivery)
    snapshot = (count(store, cases), count(store, case_alerts), count(store, case_events))
    assert snapshot == (1, 2, 4)  # opened, linked a-1, escalated, linked b
    for delivery in history + history:  # a restarted worker replays the topic, twice
        assert store.upsert_alert(delivery) is None
    assert (count(store, cases), count(store, case_alerts), count(store, case_events)) \
        == snapshot


def test_the_hook_itself_is_idempotent(store: Store, desk: CaseStore) -> None:
    """Even if a duplicate reached the hook (it does not: upsert_alert stops it first), the
    alert would not link twice nor open another case."""
    store.upsert_alert(alert())
    (case,), _, _ = desk.list_cases()
    with store.write() as conn:
        for change in ("created", "created", "updated"):
            assert case_intake.on_alert_change(conn, change, row(), SLA, STAFF_NOW) \
                == case["id"]
    assert (count(store, cases), count(store, case_alerts), count(store, case_events)) \
        == (1, 1, 2)


def test_concurrent_deliveries_of_the_same_alerts_make_one_case(store: Store) -> None:
    deliveries = [alert(id=f"a-{i}", type=f"t{i}", first_seen=1000 + i, last_seen=1000 + i)
                  for i in range(8)]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for a in deliveries:
                store.upsert_alert(a)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(store, cases) == 1
    assert count(store, case_alerts) == 8


def test_a_new_alert_after_the_case_closed_opens_a_new_case(
        store: Store, desk: CaseStore) -> None:
    first = open_case(store, desk)
    desk.transition_case(first["id"], "no_action_needed", actor="ann")
    # The closed case's alert escalating later changes nothing on the closed case.
    store.upsert_alert(alert(severity="critical", last_seen=5000))
    closed = desk.get_case(first["id"])
    assert closed is not None
    assert closed["severity"] == "info"
    assert closed["state"] == \
        "no_action_needed"
    store.upsert_alert(alert(id="again", first_seen=8000, last_seen=8000, severity="warning"))
    rows, _, _ = desk.list_cases(asset_id=VIN)
    assert [(r["state"], r["opened_event_ms"], r["severity"]) for r in rows] == [
        ("new", 8000, "warning"), ("no_action_needed", 1000, "info")]
    newest = desk.get_case(rows[0]["id"])
    assert newest is not None
    assert [a["id"] for a in newest["alerts"]] == ["again"]


def test_the_database_allows_one_open_case_per_asset(store: Store, desk: CaseStore) -> None:
    case = open_case(store, desk)
    same = {k: case[k] for k in ("asset_kind", "asset_id", "severity", "opened_event_ms",
                                 "due_event_ms", "updated_wall_ms")}
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.execute(cases.insert().values(**same, state="acknowledged", version=1))
    with store.write() as conn:  # a closed one alongside is fine
        conn.execute(cases.insert().values(**same, state="resolved", version=1))


# ---------------------------------------------------------------------------- staff work


def test_working_a_case_down_the_main_path(store: Store, desk: CaseStore,
                                           clock: Clock) -> None:
    case = open_case(store, desk)
    store.upsert_alert(alert(id="b", type="dtc", first_seen=2000, last_seen=2000))
    for i, to in enumerate(("acknowledged", "owner_contacted", "service_booked", "resolved")):
        clock.now = STAFF_NOW + i
        after = desk.transition_case(case["id"], to, actor="ann",
                                     note="booked for Tuesday" if to == "service_booked"
                                     else None)
        assert after["state"] == to
        assert after["updated_wall_ms"] == STAFF_NOW + i
    assert after["closed_wall_ms"] == STAFF_NOW + 3
    assert after["allowed_transitions"] == []
    assert [(a["id"], a["outcome"]) for a in after["alerts"]] == [("a-1", "confirmed"),
                                                                  ("b", "confirmed")]
    trail = [e for e in after["events"] if e["action"] == "transitioned"]
    assert [(e["at_event_ms"], e["at_wall_ms"], e["actor"], e["from_state"], e["to_state"])
            for e in trail] == [  # staff actions have no event time
        (None, STAFF_NOW, "ann", "new", "acknowledged"),
        (None, STAFF_NOW + 1, "ann", "acknowledged", "owner_contacted"),
        (None, STAFF_NOW + 2, "ann", "owner_contacted", "service_booked"),
        (None, STAFF_NOW + 3, "ann", "service_booked", "resolved")]
    assert trail[2]["detail"] == {"note": "booked for Tuesday"}
    survey = trail[3]["detail"].pop("survey")  # the owner's one-time link (storage.surveys)
    assert survey["path"] == "/survey/" + survey["token"]
    assert trail[3]["detail"] == {"outcomes": {"a-1": "confirmed", "b": "confirmed"}}
    with store.engine.connect() as conn:
        labels = [dict(r) for r in conn.execute(
            select(alert_outcomes).order_by(alert_outcomes.c.alert_id)).mappings()]
    assert labels[0] == {"alert_id": "a-1", "case_id": case["id"],
                         "alert_type": "weak_12v_battery", "detector": "battery12v",
                         "detector_version": "1.0.0", "outcome": "confirmed",
                         "labelled_wall_ms": STAFF_NOW + 3, "labelled_by": "ann"}


def test_an_illegal_transition_changes_nothing(store: Store, desk: CaseStore) -> None:
    case = open_case(store, desk)
    with pytest.raises(IllegalTransition) as caught:
        desk.transition_case(case["id"], "resolved", actor="ann")
    assert caught.value.allowed == allowed("new")
    after = desk.get_case(case["id"])
    assert after is not None
    assert after["state"] == "new"
    assert after["version"] == case["version"]
    assert after["events"] == case["events"]
    with pytest.raises(CaseNotFound, match="no case with id 999"):
        desk.transition_case(999, "acknowledged", actor="ann")


@pytest.mark.parametrize(("ending", "overrides", "labels"), [
    ("resolved", {}, {"a-1": "confirmed", "b": "confirmed"}),
    ("resolved", {"b": "false_positive"}, {"a-1": "confirmed", "b": "false_positive"}),
    ("false_positive", {}, {"a-1": "false_positive", "b": "false_positive"}),
    ("no_action_needed", {}, {}),
    ("no_action_needed", {"a-1": "confirmed"}, {"a-1": "confirmed"}),
])
def test_ending_a_case_labels_its_alerts(store: Store, desk: CaseStore, ending: str,
                                         overrides: dict[str, str],
                                         labels: dict[str, str]) -> None:
    case = open_case(store, desk)
    store.upsert_alert(alert(id="b", type="dtc", first_seen=2000, last_seen=2000))
    desk.transition_case(case["id"], "acknowledged", actor="ann")
    if ending == "resolved":
        desk.transition_case(case["id"], "owner_contacted", actor="ann")
    after = desk.transition_case(case["id"], ending, actor="bob", outcomes=overrides)
    assert {a["id"]: a["outcome"] for a in after["alerts"] if a["outcome"]} == labels
    assert count(store, alert_outcomes) == len(labels)


def test_outcomes_only_for_the_case_alerts_and_only_when_it_ends(
        store: Store, desk: CaseStore) -> None:
    case = open_case(store, desk)
    with pytest.raises(InvalidOutcomes, match="only|when a case ends"):
        desk.transition_case(case["id"], "acknowledged", actor="ann",
                             outcomes={"a-1": "confirmed"})
    with pytest.raises(InvalidOutcomes, match="'zzz' are not part of case"):
        desk.transition_case(case["id"], "false_positive", actor="ann",
                             outcomes={"zzz": "confirmed"})
    with pytest.raises(InvalidOutcomes, match="must be one of"):
        desk.transition_case(case["id"], "false_positive", actor="ann",
                             outcomes={"a-1": "maybe"})
    after = desk.get_case(case["id"])
    assert after is not None
    assert after["state"] == "new"
    assert count(store, alert_outcomes) == 0


def test_a_stale_version_is_refused(store: Store, desk: CaseStore) -> None:
    case = open_case(store, desk)
    moved = desk.transition_case(case["id"], "acknowledged", actor="ann",
                                 expected_version=case["version"])
    assert moved["version"] == case["version"] + 1
    with pytest.raises(CaseConflict, match="someone changed it") as caught:
        desk.transition_case(case["id"], "false_positive", actor="bob",
                             expected_version=case["version"])
    assert caught.value.state == "acknowledged"
    with pytest.raises(CaseConflict):
        desk.assign_case(case["id"], "bob", actor="bob", expected_version=case["version"])


def test_assign_and_notes(store: Store, desk: CaseStore, clock: Clock) -> None:
    case = open_case(store, desk)
    assigned = desk.assign_case(case["id"], "ann", actor="lead")
    assert assigned["assignee"] == "ann"
    assert assigned["version"] == case["version"] + 1
    again = desk.assign_case(case["id"], "ann", actor="lead")  # no change, no entry
    assert again["version"] == assigned["version"]
    clock.now += 60_000
    note = desk.add_note(case["id"], "owner abroad until Friday", actor="ann")
    assert {k: note[k] for k in ("case_id", "at_event_ms", "at_wall_ms", "actor", "action",
                                 "detail")} == {
        "case_id": case["id"], "at_event_ms": None, "at_wall_ms": STAFF_NOW + 60_000,
        "actor": "ann", "action": "note", "detail": {"text": "owner abroad until Friday"}}
    unassigned = desk.assign_case(case["id"], None, actor="lead")
    assert unassigned["assignee"] is None
    assert [(e["actor"], e["action"], e["detail"]) for e in unassigned["events"][2:]] == [
        ("lead", "assigned", {"assignee_from": None, "assignee_to": "ann"}),
        ("ann", "note", {"text": "owner abroad until Friday"}),
        ("lead", "assigned", {"assignee_from": "ann", "assignee_to": None})]
    desk.transition_case(case["id"], "false_positive", actor="ann")
    with pytest.raises(CaseConflict, match="closed case cannot be reassigned"):
        desk.assign_case(case["id"], "bob", actor="lead")
    desk.add_note(case["id"], "workshop found nothing", actor="ann")  # closed: still fine
    with pytest.raises(CaseNotFound):
        desk.add_note(12345, "x", actor="ann")
    with pytest.raises(CaseNotFound):
        desk.assign_case(12345, "x", actor="ann")


# ---------------------------------------------------------------------------- reads


def test_overdue_is_judged_by_the_fleet_event_time(store: Store, desk: CaseStore) -> None:
    critical = open_case(store, desk, severity="critical")  # due 1000 + 4 h
    info = open_case(store, desk, id="i", asset_id=VIN2)  # due 1000 + 72 h
    assert desk.list_cases(overdue=True)[0] == []  # no telemetry yet: no fleet now
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0, 1000 + 4 * HOUR)])
    assert desk.list_cases(overdue=True)[0] == []  # due exactly now is not late
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0, 1000 + 5 * HOUR)])
    rows, _, fleet_now = desk.list_cases(overdue=True)
    assert fleet_now == 1000 + 5 * HOUR
    assert [r["id"] for r in rows] == [critical["id"]]
    assert rows[0]["overdue"] is True
    assert [r["id"] for r in desk.list_cases(overdue=False)[0]] == [info["id"]]
    detail = desk.get_case(critical["id"])
    assert detail is not None
    assert detail["overdue"]
    assert detail["fleet_now_event_ms"] == fleet_now
    desk.transition_case(critical["id"], "false_positive", actor="ann")  # closed: not late
    assert desk.list_cases(overdue=True)[0] == []
    assert {r["id"] for r in desk.list_cases(overdue=False)[0]} == {critical["id"], info["id"]}


def test_list_filters(store: Store, desk: CaseStore) -> None:
    a = open_case(store, desk, severity="critical")
    b = open_case(store, desk, id="b", asset_id=VIN2)
    desk.assign_case(a["id"], "ann", actor="lead")
    desk.transition_case(b["id"], "acknowledged", actor="ann")

    def ids(**filters: Any) -> list[int]:
        return [r["id"] for r in desk.list_cases(**filters)[0]]

    assert ids() == [b["id"], a["id"]]
    assert ids(state="acknowledged") == [b["id"]]
    assert ids(assignee="ann") == [a["id"]]
    assert ids(unassigned=True) == [b["id"]]
    assert ids(severity="critical") == [a["id"]]
    assert ids(asset_id=VIN2) == [b["id"]]
    assert ids(state="resolved") == []
    assert ids(sort="due") == [a["id"], b["id"]]  # critical is due first


@pytest.mark.parametrize("sort", ["newest", "due"])
def test_pages_are_complete_while_cases_open(store: Store, desk: CaseStore,
                                             sort: str) -> None:
    for i in range(7):
        store.upsert_alert(alert(id=f"a-{i}", asset_id=f"V{i}", first_seen=i * 10,
                                 last_seen=i * 10))
    before = [r["id"] for r in desk.list_cases(sort=sort, limit=100)[0]]  # type: ignore[arg-type]
    seen: list[int] = []
    cursor = None
    n = 0
    while True:
        rows, cursor, _ = desk.list_cases(sort=sort, limit=3, cursor=cursor)  # type: ignore[arg-type]
        seen += [r["id"] for r in rows]
        # New cases open between pages (newer ids; due times later than everything seen).
        n += 1
        store.upsert_alert(alert(id=f"new-{n}", asset_id=f"N{n}", first_seen=10_000 + n,
                                 last_seen=10_000 + n))
        if cursor is None:
            break
    assert [i for i in seen if i in before] == before  # every earlier case once, in order
    assert len(seen) == len(set(seen))


def test_pagination_under_a_concurrent_writer(store: Store, desk: CaseStore) -> None:
    for i in range(20):
        store.upsert_alert(alert(id=f"a-{i}", asset_id=f"V{i}", first_seen=i, last_seen=i))
    before = [r["id"] for r in desk.list_cases(limit=100)[0]]
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 200:
            store.upsert_alert(alert(id=f"w-{i}", asset_id=f"W{i}", first_seen=5000 + i,
                                     last_seen=5000 + i))
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen: list[int] = []
        cursor = None
        while True:
            rows, cursor, _ = desk.list_cases(limit=4, cursor=cursor)
            seen += [r["id"] for r in rows]
            if cursor is None:
                break
    finally:
        stop.set()
        thread.join()
    assert [i for i in seen if i in before] == before
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)


def test_a_foreign_cursor_is_refused(store: Store, desk: CaseStore) -> None:
    for i in range(3):
        store.upsert_alert(alert(id=f"a-{i}", asset_id=f"V{i}"))
    _, cursor, _ = desk.list_cases(limit=1)
    assert cursor is not None
    with pytest.raises(ValueError, match="not one this API returned for sort=due"):
        desk.list_cases(sort="due", cursor=cursor)
    for bad in ("!!", "bm90IGpzb24", "WyJuZXdlc3QiXQ", "WyJuZXdlc3QiLHRydWVd"):
        with pytest.raises(ValueError, match="not one this API returned"):
            desk.list_cases(cursor=bad)
    with pytest.raises(ValueError, match="sort must be one of"):
        desk.list_cases(sort="oldest")  # type: ignore[arg-type]


def test_quality_per_detector_version(store: Store, desk: CaseStore) -> None:
    # Three vehicles; the 12 V detector v1 right twice and wrong once; v2 not yet labelled.
    for i, ending in enumerate(("resolved", "resolved", "false_positive")):
        case = open_case(store, desk, id=f"v1-{i}", asset_id=f"V{i}")
        desk.transition_case(case["id"], "acknowledged", actor="ann")
        if ending == "resolved":
            desk.transition_case(case["id"], "owner_contacted", actor="ann")
        desk.transition_case(case["id"], ending, actor="ann")
    open_case(store, desk, id="v2-0", asset_id="V9", detector_version="2.0.0")
    dtc = open_case(store, desk, id="dtc", asset_id="V8", type="dtc", detector="dtc")
    desk.transition_case(dtc["id"], "no_action_needed", actor="ann")
    assert desk.quality() == [
        {"alert_type": "dtc", "detector": "dtc", "detector_version": "1.0.0", "alerts": 1,
         "confirmed": 0, "false_positive": 0, "precision": None},
        {"alert_type": "weak_12v_battery", "detector": "battery12v", "detector_version": "1.0.0",
         "alerts": 3, "confirmed": 2, "false_positive": 1, "precision": pytest.approx(2 / 3)},
        {"alert_type": "weak_12v_battery", "detector": "battery12v", "detector_version": "2.0.0",
         "alerts": 1, "confirmed": 0, "false_positive": 0, "precision": None},
    ]


def test_summary_for_the_fleet_overview(store: Store, desk: CaseStore) -> None:
    empty = desk.summary()
    assert empty["by_state"] == dict.fromkeys(empty["by_state"], 0)
    assert empty["open"] == 0
    assert empty["overdue"] == 0
    assert empty["fleet_now_event_ms"] is None
    late = open_case(store, desk, severity="critical")  # due 1000 + 4 h
    open_case(store, desk, id="b", asset_id=VIN2)  # due 1000 + 72 h
    done = open_case(store, desk, id="c", asset_id="V3", severity="critical")
    desk.transition_case(done["id"], "false_positive", actor="ann")
    desk.transition_case(late["id"], "acknowledged", actor="ann")
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0, 1000 + 5 * HOUR)])
    summary = desk.summary()
    assert summary["by_state"] == {"new": 1, "acknowledged": 1, "owner_contacted": 0,
                                   "service_booked": 0, "resolved": 0, "false_positive": 1,
                                   "no_action_needed": 0}
    assert (summary["open"], summary["overdue"], summary["fleet_now_event_ms"]) == (
        2, 1, 1000 + 5 * HOUR)


def test_case_events_can_be_followed_in_commit_order(store: Store, desk: CaseStore) -> None:
    case = open_case(store, desk)
    first = desk.events_after(0)
    assert [(e["case_id"], e["action"]) for e in first] == [(case["id"], "opened"),
                                                            (case["id"], "alert_linked")]
    desk.add_note(case["id"], "hello", actor="ann")
    store.upsert_alert(alert(id="b", asset_id=VIN2))
    later = desk.events_after(first[-1]["id"])
    assert [e["action"] for e in later] == ["note", "opened", "alert_linked"]
    assert [e["id"] for e in later] == sorted(e["id"] for e in later)
    assert desk.events_after(later[-1]["id"]) == []
    assert len(desk.events_after(0, limit=2)) == 2


def test_open_cases_of_an_asset(store: Store, desk: CaseStore) -> None:
    assert desk.open_cases_of("vehicle", VIN) == []
    first = open_case(store, desk)
    assert [c["id"] for c in desk.open_cases_of("vehicle", VIN)] == [first["id"]]
    assert desk.open_cases_of("charger", VIN) == []  # same id, other kind of asset
    desk.transition_case(first["id"], "false_positive", actor="ann")
    assert desk.open_cases_of("vehicle", VIN) == []
    store.upsert_alert(alert(id="again", first_seen=5000, last_seen=5000))
    (again,) = desk.open_cases_of("vehicle", VIN)
    assert again["opened_event_ms"] == 5000
    assert again["overdue"] is False


def test_case_changes_reach_the_webhooks_that_want_them(store: Store, desk: CaseStore,
                                                        clock: Clock) -> None:
    def hook(events: list[str]) -> str:
        return str(create_webhook(store, url="https://crm.example.com/h", events=events,
                                  description="", created_by="root", now_ms=0)["id"])

    everything, transitions, alerts_only = (hook(["case.*"]), hook(["case.transitioned"]),
                                            hook(["alert.*"]))

    def outbox(webhook_id: str) -> list[tuple[str, int, dict[str, Any]]]:
        with store.engine.connect() as conn:
            return [(r.event_type, r.created_wall_ms, r.payload) for r in conn.execute(
                select(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id)
                .order_by(webhook_deliveries.c.created_wall_ms,
                          webhook_deliveries.c.event_type))]

    case = open_case(store, desk, severity="warning")
    clock.now += 1000
    desk.transition_case(case["id"], "acknowledged", actor="ann", note="mine")
    sent = outbox(everything)
    # Queued at the wall time of the write that made them; the event time is in the entry.
    assert [(t, at) for t, at, _ in sent] == [
        ("case.alert_linked", STAFF_NOW), ("case.opened", STAFF_NOW),
        ("case.transitioned", STAFF_NOW + 1000)]
    assert [(p["event"]["at_event_ms"], p["event"]["at_wall_ms"]) for _, _, p in sent] == [
        (1000, STAFF_NOW), (1000, STAFF_NOW), (None, STAFF_NOW + 1000)]
    assert sent[1][2]["event"]["detail"]["due_event_ms"] == 1000 + 24 * HOUR
    assert sent[1][2]["case"]["opened_event_ms"] == 1000
    _, _, moved = sent[2]
    assert moved["change"] == "transitioned"
    assert moved["case"]["state"] == "acknowledged"
    assert moved["case"]["id"] == case["id"]
    assert moved["case"]["overdue"] is False
    assert moved["case"]["severity"] == "warning"
    assert {k: moved["event"][k] for k in ("actor", "from_state", "to_state", "detail")} == {
        "actor": "ann", "from_state": "new", "to_state": "acknowledged",
        "detail": {"note": "mine"}}
    assert [t for t, _, _ in outbox(transitions)] == ["case.transitioned"]
    assert [t for t, _, _ in outbox(alerts_only)] == ["alert.created"]
    # A replayed alert announces nothing again.
    store.upsert_alert(alert(severity="warning"))
    assert len(outbox(everything)) == 3


def test_a_webhook_judges_overdue_by_the_guarded_fleet_now(store: Store, desk: CaseStore,
                                                           clock: Clock) -> None:
    """One asset reporting from 2099 moves neither the API's fleet now nor a webhook's."""
    hook = str(create_webhook(store, url="https://crm.example.com/h", events=["case.*"],
                              description="", created_by="root", now_ms=0)["id"])
    case = open_case(store, desk, severity="warning")  # due 1000 + 24 h
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0, 1000 + HOUR),
                          ("vehicle", VIN2, "Vehicle.Speed", 0, 4_102_444_800_000)])
    clock.now += 1000
    desk.transition_case(case["id"], "acknowledged", actor="ann")
    with store.engine.connect() as conn:
        (payload,) = [r.payload for r in conn.execute(
            select(webhook_deliveries).where(webhook_deliveries.c.webhook_id == hook,
                                             webhook_deliveries.c.event_type
                                             == "case.transitioned"))]
    assert store.fleet_now_ms() == 1000 + HOUR
    assert payload["case"]["overdue"] is False
    assert desk.get_case(case["id"])["overdue"] is False  # type: ignore[index]

"""Remote commands and owner surveys on a real SQLite file and a real PostgreSQL: requests
(idempotent, one in flight, rate-limited), dispatch, the cars' reports, expiry by event
time, outcome labels from results, every step in the case trail; surveys once only, low
scores open a task, and the quality-of-contact figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from care import commands as policy
from storage import commands as cmds
from storage import surveys
from storage.cases import CaseStore
from storage.models import alert_outcomes
from storage.store import Store
from tests.storage.test_case_store import SLA, Clock
from tests.storage.test_store import alert

VIN = "WCRAAAAAAAAAAAAA1"
T0 = 1_767_225_600_000


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db.sqlite'}", case_sla_hours=SLA, clock=clock)
    return Store(request.getfixturevalue("postgres").new_database(), case_sla_hours=SLA,
                 clock=clock)


def weak_battery_case(store: Store, ts: int = T0) -> dict[str, Any]:
    """A car that reported at ``ts`` with a weak-battery alert, and the case it opened."""
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0, ts)])
    assert store.upsert_alert(alert(id="a-weak", first_seen=ts, last_seen=ts)) == "created"
    rows, _, _ = CaseStore(store).list_cases(asset_id=VIN)
    return rows[0]


def report(command_id: str, status: str, ts: int, seq: int = 1, **data: Any) -> dict[str, Any]:
    return {"kind": "vehicle_command_result", "id": VIN, "ts": ts, "seq": seq,
            "data": {"command_id": command_id, "status": status, **data}}


def test_a_battery_test_runs_its_course_and_confirms_its_alert(store: Store) -> None:
    case = weak_battery_case(store)
    row, created = cmds.request_command(store, vin=VIN, kind="battery_test", actor="agent-1",
                                        key_id="k1", command_id="c-1", case_id=case["id"])
    assert created
    assert row["state"] == "requested"
    assert row["alert_id"] == "a-weak"
    assert row["issued_event_ms"] == T0
    assert row["expires_event_ms"] == T0 + policy.DEFAULT_TTL_MS
    assert "nonce" not in row
    # Idempotent by id.
    again, created = cmds.request_command(store, vin=VIN, kind="battery_test", actor="agent-1",
                                          key_id="k1", command_id="c-1")
    assert not created
    assert again["id"] == "c-1"
    (todo,) = cmds.to_dispatch(store)
    assert todo["nonce"]
    assert cmds.mark_sent(store, ["c-1"]) == 1
    assert cmds.mark_sent(store, ["c-1"]) == 0
    result = {"passed": False, "resting_voltage": 12.3, "voltage_under_load": 8.9}
    reports = [report("c-1", "acknowledged", T0 + 10),
               report("c-1", "failed", T0 + 20, 2, kind="battery_test", result=result,
                      reason="battery_failed_load_test")]
    assert cmds.apply_reports(store, reports) == 2
    assert cmds.apply_reports(store, reports) == 0  # redelivered: no change
    # A second copy of the command reached the car, which refused it as a replay: no change.
    assert cmds.apply_reports(store, [report("c-1", "refused", T0 + 30, 3,
                                             reason="replayed")]) == 0
    got = cmds.get_command(store, "c-1")
    assert got is not None
    assert (got["state"], got["verdict"], got["result"]) == ("failed", "confirmed", result)
    assert [e["state"] for e in got["events"]] == ["requested", "sent", "acknowledged",
                                                   "failed"]
    with store.engine.connect() as conn:
        label = conn.execute(select(alert_outcomes.c.outcome, alert_outcomes.c.labelled_by)
                             .where(alert_outcomes.c.alert_id == "a-weak")).one()
    assert tuple(label) == ("confirmed", "command:c-1")
    detail = CaseStore(store).get_case(case["id"])
    assert detail is not None
    trail = [(e["action"], e["detail"].get("state")) for e in detail["events"]
             if e["action"] == "command"]
    assert trail == [("command", "requested"), ("command", "sent"),
                     ("command", "acknowledged"), ("command", "failed")]
    # Resolving keeps the command's label; the owner gets a survey link.
    desk = CaseStore(store)
    for to in ("acknowledged", "owner_contacted", "resolved"):
        detail = desk.transition_case(case["id"], to, actor="agent-1")
    resolved = detail["events"][-1]
    assert resolved["detail"]["outcomes"] == {"a-weak": "confirmed"}
    assert resolved["detail"]["survey"]["path"].startswith("/survey/")


def test_a_passed_test_on_a_healthy_battery_refutes_the_alert_and_staff_may_overrule(
        store: Store) -> None:
    case = weak_battery_case(store)
    cmds.request_command(store, vin=VIN, kind="battery_test", actor="a", key_id="k",
                         command_id="c-2")  # from the vehicle: joins its open case
    cmds.mark_sent(store, ["c-2"])
    cmds.apply_reports(store, [report("c-2", "succeeded", T0 + 5, kind="battery_test",
                                      result={"passed": True, "resting_voltage": 12.7})])
    got = cmds.get_command(store, "c-2")
    assert got is not None
    assert got["case_id"] == case["id"]
    assert got["verdict"] == "false_positive"
    desk = CaseStore(store)
    desk.transition_case(case["id"], "acknowledged", actor="a")
    detail = desk.transition_case(case["id"], "false_positive", actor="a",
                                  outcomes={"a-weak": "confirmed"})
    assert detail["alerts"][0]["outcome"] == "confirmed"  # said explicitly: staff win


def test_one_command_of_a_kind_in_flight_and_ids_are_not_reused(store: Store) -> None:
    weak_battery_case(store)
    cmds.request_command(store, vin=VIN, kind="snapshot", actor="a", key_id="k", command_id="s1")
    with pytest.raises(cmds.CommandConflict) as info:
        cmds.request_command(store, vin=VIN, kind="snapshot", actor="a", key_id="k")
    assert info.value.command_id == "s1"
    with pytest.raises(cmds.CommandConflict, match="already used"):
        cmds.request_command(store, vin=VIN, kind="wake", actor="a", key_id="k",
                             command_id="s1")
    cmds.request_command(store, vin=VIN, kind="wake", actor="a", key_id="k")  # another kind
    with pytest.raises(cmds.CommandNotFound):
        cmds.request_command(store, vin="WCRAAAAAAAAAAAAA9", kind="wake", actor="a",
                             key_id="k")


def test_requests_are_rate_limited_per_vehicle(store: Store, clock: Clock) -> None:
    weak_battery_case(store)
    for n in range(policy.PER_VEHICLE_PER_WINDOW):
        cmds.request_command(store, vin=VIN, kind="wake", actor="a", key_id=f"k{n}",
                             command_id=f"w{n}")
        cmds.mark_sent(store, [f"w{n}"])
        cmds.apply_reports(store, [report(f"w{n}", "succeeded", T0 + n, n, kind="wake",
                                          result={})])
        clock.now += 1000
    with pytest.raises(cmds.CommandRateLimited) as info:
        cmds.request_command(store, vin=VIN, kind="wake", actor="a", key_id="other")
    assert 0 < info.value.retry_after_ms <= policy.RATE_WINDOW_MS
    clock.now += info.value.retry_after_ms
    cmds.request_command(store, vin=VIN, kind="wake", actor="a", key_id="other")


def test_expiry_follows_the_fleets_event_time_and_a_timely_late_result_still_counts(
        store: Store) -> None:
    weak_battery_case(store)
    cmds.request_command(store, vin=VIN, kind="snapshot", actor="a", key_id="k", command_id="x")
    cmds.mark_sent(store, ["x"])
    assert cmds.expire_due(store) == 0  # the fleet's clock has not moved
    expiry = T0 + policy.DEFAULT_TTL_MS
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 1.0, expiry + 1)])
    assert cmds.expire_due(store) == 1
    assert cmds.get_command(store, "x")["state"] == "expired"  # type: ignore[index]
    # A result the car produced before the expiry, arriving after it was declared, wins.
    cmds.apply_reports(store, [report("x", "succeeded", expiry - 5, kind="snapshot",
                                      result={"signals": {}, "dtcs": [], "software": {}})])
    assert cmds.get_command(store, "x")["state"] == "succeeded"  # type: ignore[index]


def test_reports_for_commands_never_sent_change_nothing(store: Store) -> None:
    weak_battery_case(store)
    assert cmds.apply_reports(store, [report("forged", "refused", T0, reason="bad_signature")]) \
        == 0


def test_a_survey_is_answered_once_and_a_low_score_opens_a_task(store: Store, clock: Clock
                                                                ) -> None:
    case = weak_battery_case(store)
    desk = CaseStore(store)
    desk.assign_case(case["id"], "agent-7", actor="lead")
    for to in ("acknowledged", "owner_contacted", "resolved"):
        detail = desk.transition_case(case["id"], to, actor="agent-7")
    token = detail["events"][-1]["detail"]["survey"]["token"]
    assert surveys.open_survey(store, token)["case_id"] == case["id"]
    with pytest.raises(ValueError, match="rating"):
        surveys.answer(store, token, "9", "")
    answered = surveys.answer(store, token, "2", "nobody called back")
    assert answered["follow_up_task_id"] is not None
    with pytest.raises(surveys.SurveyUnavailable) as info:
        surveys.answer(store, token, "5", "")
    assert info.value.reason == "used"
    (task,) = surveys.list_tasks(store, "open")
    assert (task["case_id"], task["for_role"], task["detail"]["score"]) == (
        case["id"], "supervisor", 2)
    closed = surveys.close_task(store, task["id"], actor="boss", note="called the owner")
    assert (closed["state"], closed["closed_by"]) == ("done", "boss")
    quality = surveys.contact_quality(store)
    assert quality["answers"] == 1
    assert quality["satisfaction"]["agent"] == [
        {"key": "agent-7", "answers": 1, "mean_score": 2.0, "csat": 0.0}]
    assert quality["satisfaction"]["alert_type"][0]["key"] == "weak_12v_battery"
    assert [r["channel"] for r in quality["timings"]] == ["owner"]
    assert quality["precision"] == [{"alert_type": "weak_12v_battery", "detector": "battery12v",
                                     "staff_labels": 1, "command_labels": 0,
                                     "precision_before": 1.0, "precision_after": 1.0}]
    # Forged and expired links.
    with pytest.raises(surveys.SurveyUnavailable) as info:
        surveys.open_survey(store, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert info.value.reason == "forged"


def test_an_expired_survey_link_does_not_open(store: Store, clock: Clock) -> None:
    case = weak_battery_case(store)
    desk = CaseStore(store)
    for to in ("acknowledged", "owner_contacted", "resolved"):
        detail = desk.transition_case(case["id"], to, actor="a")
    survey = detail["events"][-1]["detail"]["survey"]
    clock.now = survey["expires_wall_ms"] + 1
    with pytest.raises(surveys.SurveyUnavailable) as info:
        surveys.answer(store, survey["token"], "5", "")
    assert info.value.reason == "expired"


def test_requests_are_rate_limited_per_key(store: Store) -> None:
    vins = [f"WCRAAAAAAAAAAAA{n:02d}" for n in range(8)]  # 8 per car: under its limit
    store.upsert_signals([("vehicle", vin, "Vehicle.Speed", 0.0, T0) for vin in vins])
    made = 0
    for vin in vins:
        for kind in policy.KINDS:
            for n in range(2):
                if made == policy.PER_KEY_PER_WINDOW:
                    break
                command_id = f"{vin[-2:]}-{kind}-{n}"
                cmds.request_command(store, vin=vin, kind=kind, actor="bot", key_id="k-bot",
                                     command_id=command_id)
                cmds.apply_reports(store, [{"kind": "vehicle_command_result", "id": vin,
                                            "ts": T0, "seq": made, "data": {
                                                "command_id": command_id,
                                                "status": "refused", "reason": "test"}}])
                made += 1
    assert made == policy.PER_KEY_PER_WINDOW
    with pytest.raises(cmds.CommandRateLimited, match="key 'bot'"):
        cmds.request_command(store, vin=vins[-1], kind="wake", actor="bot", key_id="k-bot")
    # Another key may still ask for that car.
    cmds.request_command(store, vin=vins[-1], kind="wake", actor="ann", key_id="k-ann")

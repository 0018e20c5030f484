"""Owner surveys in the store: the one-time link a resolved case sends, the owner's answer,
the follow-up task a low score opens, and the quality-of-contact figures behind
GET /quality/contact.

The link's token is signed with a secret this module makes on first use and keeps in
``survey_secrets`` (every API replica and the worker then share it through the database);
the survey row is what makes it one-time.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from care import survey as rules
from storage.commands import label_source
from storage.database import PG_LOCK_ALERTS
from storage.models import (
    alert_outcomes,
    alerts,
    case_alerts,
    case_events,
    cases,
    follow_up_tasks,
    remote_commands,
    survey_secrets,
    surveys,
)
from storage.store import Store

log = logging.getLogger(__name__)

SURVEY_PATH = "/survey/"


class SurveyUnavailable(Exception):
    """The link does not lead to a survey that can be answered: ``reason`` is ``forged``,
    ``expired``, ``used`` (answered already) or ``unknown``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class TaskNotFound(LookupError):
    pass


def _secret(conn: Connection, now: int) -> bytes:
    row = conn.execute(select(survey_secrets.c.secret).where(survey_secrets.c.id == 1)).first()
    if row is None:
        value = base64.b64encode(secrets.token_bytes(32)).decode()
        insert = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(survey_secrets)
        # Another process may make it at the same moment: then theirs is the one.
        conn.execute(insert.values(id=1, secret=value, created_wall_ms=now)
                     .on_conflict_do_nothing(index_elements=["id"]))
        row = conn.execute(select(survey_secrets.c.secret)
                           .where(survey_secrets.c.id == 1)).one()
    return base64.b64decode(row[0])


def issue(conn: Connection, case: dict[str, Any], resolved_by: str, now: int
          ) -> dict[str, Any]:
    """A survey for ``case`` (resolved now, in the caller's transaction): its link, for the
    case's webhook event. The agent it rates is the case's assignee, else who resolved it."""
    survey_id = str(uuid.uuid4())
    expires = now + rules.SURVEY_TTL_MS
    conn.execute(surveys.insert().values(
        id=survey_id, case_id=case["id"], agent=case.get("assignee") or resolved_by,
        issued_wall_ms=now, expires_wall_ms=expires))
    token = rules.make_token(_secret(conn, now),
                             rules.SurveyClaim(survey_id, int(case["id"]), expires))
    return {"survey_id": survey_id, "token": token, "path": SURVEY_PATH + token,
            "expires_wall_ms": expires}


def _claim(conn: Connection, token: str, now: int) -> dict[str, Any]:
    secret = conn.execute(select(survey_secrets.c.secret)
                          .where(survey_secrets.c.id == 1)).scalar_one_or_none()
    if secret is None:  # no survey was ever issued: nothing can be authentic
        raise SurveyUnavailable("forged", "the token's signature does not match")
    try:
        claim = rules.read_token(base64.b64decode(secret), token, now)
    except rules.TokenRejected as exc:
        raise SurveyUnavailable(exc.reason, str(exc)) from None
    row = conn.execute(select(surveys).where(surveys.c.id == claim.survey_id)).mappings().first()
    if row is None or row["case_id"] != claim.case_id:
        raise SurveyUnavailable("unknown", "this survey does not exist")
    if row["answered_wall_ms"] is not None:
        raise SurveyUnavailable("used", "this survey was answered already")
    return dict(row)


def open_survey(store: Store, token: str) -> dict[str, Any]:
    """The survey a valid, unused, unexpired link leads to; SurveyUnavailable otherwise."""
    with store.engine.connect() as conn:
        return _claim(conn, token, store.clock())


def answer(store: Store, token: str, score: object, comment: object) -> dict[str, Any]:
    """Record the owner's answer, once; a low score opens a follow-up task. Raises
    SurveyUnavailable, or ValueError for an invalid score or comment."""
    score_value, text = rules.check_answer(score, comment)
    with store.write(PG_LOCK_ALERTS) as conn:
        now = store.clock()
        row = _claim(conn, token, now)
        done = conn.execute(update(surveys).where(
            surveys.c.id == row["id"], surveys.c.answered_wall_ms.is_(None)).values(
            answered_wall_ms=now, score=score_value, comment=text))
        if done.rowcount != 1:
            raise SurveyUnavailable("used", "this survey was answered already")
        task_id = None
        if rules.needs_follow_up(score_value):
            result = conn.execute(follow_up_tasks.insert().values(
                case_id=row["case_id"], survey_id=row["id"], kind="low_satisfaction",
                for_role="supervisor", state="open", created_wall_ms=now,
                detail={"score": score_value, "comment": text, "agent": row["agent"]}))
            task_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    log.info("survey_answered id=%s case=%s score=%s follow_up=%s", row["id"], row["case_id"],
             score_value, task_id)
    return {**row, "answered_wall_ms": now, "score": score_value, "comment": text,
            "follow_up_task_id": task_id}


def survey_of_case(store: Store, case_id: int) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(surveys).where(surveys.c.case_id == case_id)).mappings().first()
    return {str(k): v for k, v in row.items()} if row else None


# ---------------------------------------------------------------------------- follow-up tasks


def list_tasks(store: Store, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = select(follow_up_tasks)
    if state is not None:
        query = query.where(follow_up_tasks.c.state == state)
    with store.engine.connect() as conn:
        return [{str(k): v for k, v in r.items()} for r in conn.execute(
            query.order_by(follow_up_tasks.c.id.desc()).limit(limit)).mappings()]


def close_task(store: Store, task_id: int, *, actor: str, note: str | None = None
               ) -> dict[str, Any]:
    with store.write() as conn:
        row = conn.execute(select(follow_up_tasks).where(
            follow_up_tasks.c.id == task_id)).mappings().first()
        if row is None:
            raise TaskNotFound(f"no task with id {task_id}")
        if row["state"] != "done":
            detail = dict(row["detail"])
            if note:
                detail["closing_note"] = note
            conn.execute(update(follow_up_tasks).where(follow_up_tasks.c.id == task_id).values(
                state="done", closed_wall_ms=store.clock(), closed_by=actor, detail=detail))
        row = conn.execute(select(follow_up_tasks).where(
            follow_up_tasks.c.id == task_id)).mappings().one()
    return {str(k): v for k, v in row.items()}


# ---------------------------------------------------------------------------- quality of contact


def _month(wall_ms: int) -> str:
    return dt.datetime.fromtimestamp(wall_ms / 1000, tz=dt.UTC).strftime("%Y-%m")


def _satisfaction(groups: dict[str, list[int]]) -> list[dict[str, Any]]:
    """Per group: answers, mean score, and the CSAT share (answers scoring 4 or 5)."""
    return [{"key": key, "answers": len(scores),
             "mean_score": round(sum(scores) / len(scores), 3),
             "csat": round(sum(1 for s in scores if s >= 4) / len(scores), 3)}
            for key, scores in sorted(groups.items())]


def _median(values: list[int]) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2


def contact_quality(store: Store) -> dict[str, Any]:
    """Satisfaction by alert type, detector, severity, agent and month; contact timings by
    channel; detector precision from staff labels only and with the remote commands' labels.

    Timings are wall clock, both ends written by ownercare: from the case's ``opened`` entry
    to the first contact (a remote command requested, the owner contacted, or a service
    booked directly) and to the case's close; "SLA kept" is a close within the SLA's
    duration (due minus opened) of that span.
    """
    with store.engine.connect() as conn:
        answered = conn.execute(select(surveys.c.case_id, surveys.c.agent, surveys.c.score,
                                       surveys.c.answered_wall_ms, cases.c.severity)
                                .join(cases, cases.c.id == surveys.c.case_id)
                                .where(surveys.c.score.is_not(None))).all()
        case_ids = sorted({int(r.case_id) for r in answered})
        kinds: dict[int, set[tuple[str, str]]] = defaultdict(set)
        for start in range(0, len(case_ids), 500):
            for case_id, alert_type, detector in conn.execute(
                    select(case_alerts.c.case_id, alerts.c.type, alerts.c.detector)
                    .join(alerts, alerts.c.id == case_alerts.c.alert_id)
                    .where(case_alerts.c.case_id.in_(case_ids[start:start + 500]))):
                kinds[int(case_id)].add((alert_type, detector))
        closed = conn.execute(select(cases.c.id, cases.c.opened_event_ms, cases.c.due_event_ms,
                                     cases.c.closed_wall_ms)
                              .where(cases.c.closed_wall_ms.is_not(None))).all()
        events = conn.execute(select(case_events.c.case_id, case_events.c.action,
                                     case_events.c.to_state, case_events.c.at_wall_ms)
                              .where(case_events.c.action.in_(("opened", "transitioned")))
                              .order_by(case_events.c.id)).all()
        first_command = dict(conn.execute(
            select(remote_commands.c.case_id, remote_commands.c.requested_wall_ms)
            .where(remote_commands.c.case_id.is_not(None))
            .order_by(remote_commands.c.requested_wall_ms.desc())).all())
        labels = conn.execute(select(alert_outcomes.c.alert_type, alert_outcomes.c.detector,
                                     alert_outcomes.c.outcome,
                                     alert_outcomes.c.labelled_by)).all()
    by: dict[str, dict[str, list[int]]] = {k: defaultdict(list) for k in (
        "alert_type", "detector", "severity", "agent", "month")}
    for row in answered:
        score = int(row.score)
        for alert_type in sorted({t for t, _d in kinds[int(row.case_id)]}):
            by["alert_type"][alert_type].append(score)
        for detector in sorted({d for _t, d in kinds[int(row.case_id)]}):
            by["detector"][detector].append(score)
        by["severity"][row.severity].append(score)
        by["agent"][row.agent or "(nobody)"].append(score)
        by["month"][_month(int(row.answered_wall_ms))].append(score)
    return {"answers": len(answered),
            "satisfaction": {k: _satisfaction(v) for k, v in by.items()},
            "timings": _timings(closed, events, first_command),
            "precision": _precision(labels)}


def _timings(closed: Iterable[Any], events: Iterable[Any], first_command: dict[int, int]
             ) -> list[dict[str, Any]]:
    opened: dict[int, int] = {}
    contact: dict[int, tuple[int, str]] = {}
    for case_id, action, to_state, at_wall in events:
        if at_wall is None:
            continue
        if action == "opened":
            opened.setdefault(case_id, at_wall)
        elif to_state in ("owner_contacted", "service_booked") and case_id not in contact:
            contact[case_id] = (at_wall, "owner" if to_state == "owner_contacted" else "service")
    for case_id, at_wall in first_command.items():
        if case_id not in contact or at_wall <= contact[case_id][0]:
            contact[case_id] = (at_wall, "remote")
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for case_id, opened_event, due_event, closed_wall in closed:
        start = opened.get(case_id)
        if start is None:
            continue
        first = contact.get(case_id)
        channel = first[1] if first else "none"
        if first is not None and first[0] <= closed_wall:
            groups[channel]["first_contact"].append(max(0, first[0] - start))
        span = max(0, closed_wall - start)
        groups[channel]["resolution"].append(span)
        groups[channel]["sla_kept"].append(int(span <= due_event - opened_event))
    return [{"channel": channel, "cases": len(g["resolution"]),
             "median_first_contact_ms": _median(g["first_contact"]),
             "median_resolution_ms": _median(g["resolution"]),
             "sla_kept": round(sum(g["sla_kept"]) / len(g["sla_kept"]), 3)}
            for channel, g in sorted(groups.items())]


def _precision(labels: Iterable[Any]) -> list[dict[str, Any]]:
    """Per (alert type, detector): precision from staff labels alone ("before") and with the
    labels remote commands' results added ("after")."""
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    prefix = label_source("")
    for alert_type, detector, outcome, labelled_by in labels:
        source = "command" if labelled_by.startswith(prefix) else "staff"
        counts[(alert_type, detector)][f"{source}_{outcome}"] += 1
    out = []
    for (alert_type, detector), c in sorted(counts.items()):
        staff = c["staff_confirmed"] + c["staff_false_positive"]
        total = staff + c["command_confirmed"] + c["command_false_positive"]
        out.append({
            "alert_type": alert_type, "detector": detector,
            "staff_labels": staff, "command_labels": total - staff,
            "precision_before": c["staff_confirmed"] / staff if staff else None,
            "precision_after": (c["staff_confirmed"] + c["command_confirmed"]) / total
            if total else None})
    return out

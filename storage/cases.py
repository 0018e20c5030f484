"""Care cases for staff: list, detail, transition, assign, note; and detector quality.

``CaseStore(store)`` works on a ``Store`` (its engine, its serialised write
transactions), like ``KeyStore``; the API keeps one on ``app.state.cases``.
Cases open and escalate on the alert write path (``storage.case_intake``); here staff work them.

* Staff writes take the same lock as alert upserts, so a case cannot close between the
  moment an arriving alert finds it open and the moment it links to it.
* Times of staff actions are wall clock (``*_wall_ms``), from ``clock`` (the store's by
  default; injectable for tests).
* "Overdue" means open and ``due_event_ms`` before the fleet's event-time now
  (``fleet_now_event_ms``: the newest timestamp any asset reported; the same "now" the
  vehicle view ages signals by). The due time is event time too, so an accelerated simulation
  or a replay shows the cases overdue that were overdue then; with no telemetry yet nothing
  is overdue.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection

from care import casework
from storage import surveys
from storage.case_intake import public_case, record
from storage.database import PG_LOCK_ALERTS
from storage.models import alert_outcomes, alerts, case_alerts, case_events, cases
from storage.store import Store

log = logging.getLogger(__name__)

CaseSort = Literal["newest", "due"]
SORTS: tuple[CaseSort, ...] = ("newest", "due")


class CaseNotFound(LookupError):
    def __init__(self, case_id: int) -> None:
        self.case_id = case_id
        super().__init__(f"no case with id {case_id}")


class CaseConflict(Exception):
    """The case is not in a shape that allows the change (stale version, closed case)."""

    def __init__(self, message: str, state: str) -> None:
        self.state = state  # the case's current state
        super().__init__(message)


class InvalidOutcomes(ValueError):
    """The per-alert outcome map names alerts outside the case, or comes too early."""


# ---------------------------------------------------------------------------- cursors


def encode_cursor(sort: CaseSort, row: Mapping[str, Any]) -> str:
    key = [sort, row["id"]] if sort == "newest" else [sort, row["due_event_ms"], row["id"]]
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str, sort: CaseSort) -> list[int]:
    """The cursor's key values; ValueError unless this API issued it for this ``sort``."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
        if not isinstance(key, list) or not key or key[0] != sort:
            raise TypeError
        values = key[1:]
        if len(values) != (1 if sort == "newest" else 2) or not all(
                isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63
                for v in values):
            raise TypeError
        return values
    except (ValueError, TypeError):
        raise ValueError(f"cursor is not one this API returned for sort={sort}") from None


# ---------------------------------------------------------------------------- helpers


def _load(conn: Connection, case_id: int, expected_version: int | None) -> dict[str, Any]:
    row = conn.execute(select(cases).where(cases.c.id == case_id)).mappings().first()
    if row is None:
        raise CaseNotFound(case_id)
    if expected_version is not None and row["version"] != expected_version:
        raise CaseConflict(f"case {case_id} is at version {row['version']}, not "
                           f"{expected_version}: someone changed it since you read it",
                           row["state"])
    return dict(row)


# ---------------------------------------------------------------------------- the store


class CaseStore:
    """Care cases in the relational store: what staff read and do."""

    def __init__(self, store: Store, clock: Callable[[], int] | None = None) -> None:
        self.store = store
        self.clock = clock or store.clock

    def list_cases(
        self, *, state: str | None = None, assignee: str | None = None,
        unassigned: bool = False, severity: str | None = None, asset_id: str | None = None,
        overdue: bool | None = None, sort: CaseSort = "newest", limit: int = 50,
        cursor: str | None = None, open_only: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None, int | None]:
        """One page of cases, the next page's cursor, and the fleet now used for ``overdue``.

        ``sort="newest"``: most recently opened first (id descending; ids are assigned in commit
        order under the alert lock, so cases opened meanwhile sort before the cursor and pages
        never repeat or skip). ``sort="due"``: the work queue, earliest due first; a case
        that escalates while a client pages moves to its new place and may be seen twice or not
        at all in that pass.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        fleet_now = self.store.fleet_now_ms()
        query = select(cases)
        for column, value in ((cases.c.state, state), (cases.c.assignee, assignee),
                              (cases.c.severity, severity), (cases.c.asset_id, asset_id)):
            if value is not None:
                query = query.where(column == value)
        if unassigned:
            query = query.where(cases.c.assignee.is_(None))
        if open_only:  # the console's work queue: every state staff still work
            query = query.where(cases.c.state.not_in(sorted(casework.TERMINAL)))
        is_overdue = and_(cases.c.state.not_in(sorted(casework.TERMINAL)),
                          cases.c.due_event_ms < (fleet_now if fleet_now is not None else -1))
        if overdue is True:
            query = query.where(is_overdue)
        elif overdue is False:
            query = query.where(~is_overdue)
        if sort == "newest":
            if cursor:
                (last_id,) = decode_cursor(cursor, sort)
                query = query.where(cases.c.id < last_id)
            query = query.order_by(cases.c.id.desc())
        else:
            if cursor:
                last_due, last_id = decode_cursor(cursor, sort)
                query = query.where(or_(cases.c.due_event_ms > last_due,
                                        and_(cases.c.due_event_ms == last_due,
                                             cases.c.id > last_id)))
            query = query.order_by(cases.c.due_event_ms, cases.c.id)
        with self.store.engine.connect() as conn:
            found = conn.execute(query.limit(limit + 1)).mappings()
            rows = [public_case(r, fleet_now) for r in found]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(sort, rows[-1])
        return rows, next_cursor, fleet_now

    def get_case(self, case_id: int) -> dict[str, Any] | None:
        """A case with its alerts (each with its outcome label, if any), its audit trail (oldest
        first), the transitions allowed now, and the fleet now behind ``overdue``."""
        fleet_now = self.store.fleet_now_ms()
        with self.store.engine.connect() as conn:
            row = conn.execute(select(cases).where(cases.c.id == case_id)).mappings().first()
            if row is None:
                return None
            linked = [dict(r) for r in conn.execute(
                select(alerts, alert_outcomes.c.outcome)
                .join(case_alerts, case_alerts.c.alert_id == alerts.c.id)
                .outerjoin(alert_outcomes, alert_outcomes.c.alert_id == alerts.c.id)
                .where(case_alerts.c.case_id == case_id)
                .order_by(alerts.c.first_seen_event_ms, alerts.c.id)).mappings()]
            events = [dict(r) for r in conn.execute(
                select(case_events).where(case_events.c.case_id == case_id)
                .order_by(case_events.c.id)).mappings()]
        case = public_case(row, fleet_now)
        return {**case, "alerts": linked, "events": events, "fleet_now_event_ms": fleet_now,
                "allowed_transitions": list(casework.allowed(case["state"]))}

    # ------------------------------------------------------------------ staff writes

    def transition_case(
        self, case_id: int, to: str, *, actor: str, note: str | None = None,
        outcomes: Mapping[str, str] | None = None, expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Move a case to ``to``; return the case as ``get_case`` does.

        When the case ends, its alerts are labelled for GET /quality: ``casework.default_outcome``
        of the final state, overridden per alert by ``outcomes`` ({alert_id: "confirmed" |
        "false_positive"}), which is only accepted when the case ends.
        Raises CaseNotFound, CaseConflict, casework.IllegalTransition (with the allowed moves),
        InvalidOutcomes.
        """
        outcomes = dict(outcomes or {})
        for alert_id, given in outcomes.items():
            if given not in casework.OUTCOMES:
                raise InvalidOutcomes(f"outcome for alert {alert_id!r} must be one of "
                                      f"{', '.join(casework.OUTCOMES)}, not {given!r}")
        with self.store.write(PG_LOCK_ALERTS) as conn:
            case = _load(conn, case_id, expected_version)
            new_state = casework.transition(case["state"], to)
            final = casework.is_terminal(new_state)
            if outcomes and not final:
                endings = ", ".join(sorted(casework.TERMINAL))
                raise InvalidOutcomes(f"outcomes are recorded when a case ends ({endings}), "
                                      f"not on a move to {new_state}")
            members = {r["id"]: r for r in conn.execute(
                select(alerts).join(case_alerts, case_alerts.c.alert_id == alerts.c.id)
                .where(case_alerts.c.case_id == case_id)).mappings()}
            strangers = sorted(set(outcomes) - set(members))
            if strangers:
                raise InvalidOutcomes(f"alert(s) {', '.join(map(repr, strangers))} are not part of "
                                      f"case {case_id}")
            now = self.clock()
            conn.execute(update(cases).where(cases.c.id == case_id).values(
                state=new_state, updated_wall_ms=now, version=case["version"] + 1,
                closed_wall_ms=now if final else None))
            labels: dict[str, str] = {}
            if final:
                default = casework.default_outcome(new_state)
                # A remote command's result may have labelled an alert already: the default
                # keeps that label, a label staff give explicitly replaces it.
                earlier = dict(conn.execute(select(alert_outcomes.c.alert_id,
                                                   alert_outcomes.c.outcome).where(
                    alert_outcomes.c.alert_id.in_(sorted(members)))).all())
                for alert_id, alert in sorted(members.items()):
                    label: str | None = outcomes.get(alert_id, earlier.get(alert_id, default))
                    if label is None:
                        continue
                    labels[alert_id] = label
                    if alert_id in earlier and alert_id not in outcomes:
                        continue
                    if alert_id in earlier:
                        conn.execute(alert_outcomes.delete().where(
                            alert_outcomes.c.alert_id == alert_id))
                    conn.execute(alert_outcomes.insert().values(
                        alert_id=alert_id, case_id=case_id, alert_type=alert["type"],
                        detector=alert["detector"], detector_version=alert["detector_version"],
                        outcome=label, labelled_wall_ms=now, labelled_by=actor))
            detail: dict[str, Any] = {}
            if note:
                detail["note"] = note
            if final:
                detail["outcomes"] = labels
            if new_state == "resolved":  # the owner's verdict, asked in the case's webhook
                detail["survey"] = surveys.issue(conn, case, actor, now)
            record(conn, case_id, None, now, actor, "transitioned", case["state"], new_state,
                   **detail)
        log.info("case_transitioned id=%s from=%s to=%s actor=%s labels=%s", case_id,
                 case["state"], new_state, actor, len(labels))
        return self._reread(case_id)

    def assign_case(self, case_id: int, assignee: str | None, *, actor: str,
                    expected_version: int | None = None) -> dict[str, Any]:
        """Give an open case to ``assignee`` (None: nobody). Assigning the current assignee
        again changes nothing. A closed case cannot be reassigned (CaseConflict)."""
        with self.store.write(PG_LOCK_ALERTS) as conn:
            case = _load(conn, case_id, expected_version)
            if case["state"] in casework.TERMINAL:
                raise CaseConflict(f"case {case_id} is closed ({case['state']}); a closed "
                                   "case cannot be reassigned", case["state"])
            if case["assignee"] != assignee:
                now = self.clock()
                conn.execute(update(cases).where(cases.c.id == case_id).values(
                    assignee=assignee, updated_wall_ms=now, version=case["version"] + 1))
                record(conn, case_id, None, now, actor, "assigned",
                       assignee_from=case["assignee"],
                       assignee_to=assignee)
                log.info("case_assigned id=%s assignee=%s actor=%s", case_id, assignee, actor)
        return self._reread(case_id)

    def add_note(self, case_id: int, text: str, *, actor: str) -> dict[str, Any]:
        """Append a note to the audit trail (closed cases too: what staff learn later belongs
        with the case); return the audit entry. The case's version is unchanged."""
        with self.store.write(PG_LOCK_ALERTS) as conn:
            case = _load(conn, case_id, None)
            now = self.clock()
            event_id = record(conn, case_id, None, now, actor, "note", text=text)
            row = conn.execute(select(case_events).where(case_events.c.id == event_id)).mappings()
            entry = dict(row.one())
        log.info("case_note id=%s actor=%s state=%s", case_id, actor, case["state"])
        return entry

    def _reread(self, case_id: int) -> dict[str, Any]:
        case = self.get_case(case_id)
        if case is None:  # cases are never deleted
            raise CaseNotFound(case_id)
        return case

    # ------------------------------------------------------------------ overview, followers

    def open_cases_of(self, asset_kind: str, asset_id: str) -> list[dict[str, Any]]:
        """The asset's open cases (at most one: the database allows no more), for the
        vehicle health card."""
        fleet_now = self.store.fleet_now_ms()
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(cases).where(
                cases.c.asset_kind == asset_kind, cases.c.asset_id == asset_id,
                cases.c.state.in_(sorted(casework.OPEN_STATES)))
                .order_by(cases.c.id.desc())).mappings().all()
        return [public_case(r, fleet_now) for r in rows]

    def summary(self) -> dict[str, Any]:
        """For the fleet overview: cases by state (every state, zeros included), how many
        are open, how many of those are overdue, and the fleet now that judged it."""
        fleet_now = self.store.fleet_now_ms()
        open_states = sorted(casework.OPEN_STATES)
        with self.store.engine.connect() as conn:
            by_state: dict[str, int] = dict(
                conn.execute(select(cases.c.state, func.count()).group_by(cases.c.state)).all())
            overdue = 0 if fleet_now is None else int(conn.execute(
                select(func.count()).select_from(cases).where(
                    cases.c.state.in_(open_states),
                    cases.c.due_event_ms < fleet_now)).scalar_one())
        counts = {state: int(by_state.get(state, 0)) for state in casework.STATES}
        return {"by_state": counts, "open": sum(counts[s] for s in open_states),
                "overdue": overdue, "fleet_now_event_ms": fleet_now}

    def events_after(self, after_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """Audit entries of every case with id > ``after_id``, oldest first. Ids are in
        commit order (every case write holds the alert lock), so a follower (a webhook
        dispatcher, say) that remembers the last id it handled misses nothing."""
        query = (select(case_events).where(case_events.c.id > after_id)
                 .order_by(case_events.c.id).limit(limit))
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ------------------------------------------------------------------ quality

    def quality(self) -> list[dict[str, Any]]:
        """Per (alert type, detector, detector version): how many alerts, how many staff
        labelled confirmed / false positive, and precision = confirmed / labelled (None when
        nothing is labelled yet). Ordered by type, detector, version."""
        key_cols = (alerts.c.type, alerts.c.detector, alerts.c.detector_version)
        label_cols = (alert_outcomes.c.alert_type, alert_outcomes.c.detector,
                      alert_outcomes.c.detector_version)
        with self.store.engine.connect() as conn:
            totals = conn.execute(select(*key_cols, func.count()).group_by(*key_cols)).all()
            labels = conn.execute(select(*label_cols, alert_outcomes.c.outcome, func.count())
                                  .group_by(*label_cols, alert_outcomes.c.outcome)).all()
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}

        def row_for(key: tuple[str, str, str]) -> dict[str, Any]:
            return rows.setdefault(key, {"alert_type": key[0], "detector": key[1],
                                         "detector_version": key[2], "alerts": 0,
                                         "confirmed": 0, "false_positive": 0})

        for alert_type, detector, version, count in totals:
            row_for((alert_type, detector, version))["alerts"] = int(count)
        for alert_type, detector, version, outcome, count in labels:
            row_for((alert_type, detector, version))[outcome] = int(count)
        for row in rows.values():
            labelled = row["confirmed"] + row["false_positive"]
            row["precision"] = row["confirmed"] / labelled if labelled else None
        return [rows[k] for k in sorted(rows)]

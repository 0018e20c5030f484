"""Remote support commands in the store: requests, dispatch, the cars' reports, expiry.

* The API requests (``request_command``): idempotent by id, one of a kind in flight per car,
  rate-limited per car and per key; the command's expiry is the fleet's event time now plus
  its TTL.
* The leader worker signs what is requested (``to_dispatch``, ``mark_sent``) and expires
  what the fleet's clock has passed (``expire_due``).
* The view writer folds the cars' reports in (``apply_reports``); a final result that says
  something about the alert it was requested for labels that alert's outcome
  (``care.commands.VERDICTS``), which GET /quality counts.

Every step is a row of ``remote_command_events`` and, when the command belongs to a case, an
entry ``command`` of the case's audit trail (and so a ``case.command`` webhook event).
Writes take the alert lock, as every case write does (audit ids in commit order).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection

from care import casework
from care import commands as policy
from storage.case_intake import record
from storage.database import PG_LOCK_ALERTS
from storage.models import (
    alert_outcomes,
    alerts,
    assets,
    case_alerts,
    cases,
    remote_command_events,
    remote_commands,
)
from storage.store import Store

log = logging.getLogger(__name__)

SYSTEM = "system"
VEHICLE = "vehicle"


class CommandNotFound(LookupError):
    pass


class CommandConflict(Exception):
    """The request cannot be taken now; ``command_id`` names the command in the way."""

    def __init__(self, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.command_id = command_id


class CommandRateLimited(Exception):
    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class InvalidCommand(ValueError):
    """The request names something that does not fit (a case of another car, ...)."""


def _public(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = {str(k): v for k, v in row.items()}
    out.pop("nonce", None)  # the car's replay guard; nobody else needs it
    return out


def _step(conn: Connection, row: Mapping[Any, Any], state: str, *, actor: str, now: int,
          at_event_ms: int | None = None, **detail: Any) -> None:
    """One step of a command: its own audit row and, with a case, the case's trail."""
    conn.execute(remote_command_events.insert().values(
        command_id=row["id"], at_wall_ms=now, at_event_ms=at_event_ms, actor=actor,
        state=state, detail=detail))
    if row["case_id"] is not None:
        record(conn, row["case_id"], at_event_ms, now, actor, "command",
               command_id=row["id"], kind=row["kind"], state=state, **detail)


def request_command(store: Store, *, vin: str, kind: str, actor: str, key_id: str | None,
                    command_id: str | None = None, case_id: int | None = None,
                    alert_id: str | None = None, params: Mapping[str, Any] | None = None,
                    ttl_ms: int = policy.DEFAULT_TTL_MS) -> tuple[dict[str, Any], bool]:
    """Request ``kind`` for ``vin``; return (the command, whether it was created now).

    The same ``command_id`` again for the same car and kind returns the existing command
    (idempotent retry); for anything else it is a CommandConflict. Without ``case_id`` the
    car's open case, if any, gets the command in its trail. A ``battery_test`` without
    ``alert_id`` is for the case's open ``weak_12v_battery`` alert, if there is one.
    Raises CommandNotFound (no such car), InvalidCommand, CommandConflict,
    CommandRateLimited.
    """
    policy.required_permission(kind)  # ValueError for an unknown kind
    command_id = command_id or str(uuid.uuid4())
    with store.write(PG_LOCK_ALERTS) as conn:
        existing = conn.execute(select(remote_commands).where(
            remote_commands.c.id == command_id)).mappings().first()
        if existing is not None:
            if existing["vin"] != vin or existing["kind"] != kind:
                raise CommandConflict(f"command id {command_id!r} is already used for "
                                      f"{existing['kind']} on {existing['vin']}", command_id)
            return _public(existing), False
        if conn.execute(select(assets.c.asset_id).where(
                assets.c.asset_kind == "vehicle", assets.c.asset_id == vin)).first() is None:
            raise CommandNotFound(f"no vehicle {vin} has reported yet")
        case_id, alert_id = _case_and_alert(conn, vin, kind, case_id, alert_id)
        busy = conn.execute(select(remote_commands.c.id).where(
            remote_commands.c.vin == vin, remote_commands.c.kind == kind,
            remote_commands.c.state.in_(sorted(policy.IN_FLIGHT)))).scalar_one_or_none()
        if busy is not None:
            raise CommandConflict(f"a {kind} command is already in flight for {vin}", busy)
        now = store.clock()
        _check_rate(conn, remote_commands.c.vin == vin, now, policy.PER_VEHICLE_PER_WINDOW,
                    f"vehicle {vin}")
        if key_id is not None:
            _check_rate(conn, remote_commands.c.requested_key_id == key_id, now,
                        policy.PER_KEY_PER_WINDOW, f"key {actor!r}")
        fleet_now = _fleet_now(conn)
        if fleet_now is None:  # an asset row exists, so never; but no clock, no expiry
            raise CommandConflict("the fleet has no event time yet")
        row = {"id": command_id, "vin": vin, "kind": kind, "state": "requested",
               "case_id": case_id, "alert_id": alert_id, "params": dict(params or {}),
               "nonce": secrets.token_urlsafe(16), "requested_by": actor,
               "requested_key_id": key_id, "requested_wall_ms": now,
               "issued_event_ms": fleet_now, "expires_event_ms": fleet_now + ttl_ms,
               "sent_wall_ms": None, "updated_wall_ms": now, "result_event_ms": None,
               "result": None, "reason": None, "detail": None, "verdict": None}
        conn.execute(remote_commands.insert().values(**row))
        _step(conn, row, "requested", actor=actor, now=now, alert_id=alert_id,
              expires_event_ms=row["expires_event_ms"])
    log.info("command_requested id=%s vin=%s kind=%s actor=%s case=%s", command_id, vin, kind,
             actor, case_id)
    return _public(row), True


def _fleet_now(conn: Connection) -> int | None:
    value = conn.execute(select(func.max(assets.c.last_seen_event_ms))).scalar_one_or_none()
    return int(value) if value is not None else None


def _check_rate(conn: Connection, where: Any, now: int, limit: int, who: str) -> None:
    recent = [int(t) for (t,) in conn.execute(select(remote_commands.c.requested_wall_ms).where(
        where, remote_commands.c.requested_wall_ms > now - policy.RATE_WINDOW_MS))]
    wait = policy.over_limit(recent, now, limit)
    if wait is not None:
        raise CommandRateLimited(f"{who} has had {limit} commands within the last "
                                 f"{policy.RATE_WINDOW_MS // 60_000} minutes", wait)


def _case_and_alert(conn: Connection, vin: str, kind: str, case_id: int | None,
                    alert_id: str | None) -> tuple[int | None, str | None]:
    if case_id is not None:
        case = conn.execute(select(cases).where(cases.c.id == case_id)).mappings().first()
        if case is None:
            raise CommandNotFound(f"no case with id {case_id}")
        if case["asset_kind"] != "vehicle" or case["asset_id"] != vin:
            raise InvalidCommand(f"case {case_id} is about {case['asset_kind']} "
                                 f"{case['asset_id']}, not vehicle {vin}")
    else:
        case_id = conn.execute(select(cases.c.id).where(
            cases.c.asset_kind == "vehicle", cases.c.asset_id == vin,
            cases.c.state.not_in(sorted(casework.TERMINAL)))).scalar_one_or_none()
    if alert_id is not None:
        alert = conn.execute(select(alerts.c.asset_kind, alerts.c.asset_id).where(
            alerts.c.id == alert_id)).first()
        if alert is None or alert.asset_kind != "vehicle" or alert.asset_id != vin:
            raise InvalidCommand(f"alert {alert_id!r} is not an alert of vehicle {vin}")
    elif case_id is not None:
        wanted = [t for (k, t) in policy.VERDICTS if k == kind]
        if wanted:
            alert_id = conn.execute(select(alerts.c.id).join(
                case_alerts, case_alerts.c.alert_id == alerts.c.id).where(
                case_alerts.c.case_id == case_id, alerts.c.type.in_(wanted))
                .order_by(alerts.c.first_seen_event_ms.desc()).limit(1)).scalar_one_or_none()
    return case_id, alert_id


# ---------------------------------------------------------------------------- worker side


def to_dispatch(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """Requested commands, oldest first, with their nonces (for signing)."""
    with store.engine.connect() as conn:
        return [{str(k): v for k, v in r.items()} for r in conn.execute(
            select(remote_commands).where(remote_commands.c.state == "requested")
            .order_by(remote_commands.c.requested_wall_ms, remote_commands.c.id)
            .limit(limit)).mappings()]


def mark_sent(store: Store, command_ids: Iterable[str]) -> int:
    """Kafka has these signed commands; return how many changed."""
    changed = 0
    with store.write(PG_LOCK_ALERTS) as conn:
        now = store.clock()
        for command_id in command_ids:
            row = conn.execute(select(remote_commands).where(
                remote_commands.c.id == command_id)).mappings().first()
            if row is None or policy.on_sent(row["state"]) == row["state"]:
                continue
            conn.execute(update(remote_commands).where(remote_commands.c.id == command_id)
                         .values(state="sent", sent_wall_ms=now, updated_wall_ms=now))
            _step(conn, row, "sent", actor=SYSTEM, now=now)
            changed += 1
    return changed


def expiry_due(store: Store) -> bool:
    """Whether an in-flight command's expiry is behind the fleet's event time."""
    fleet_now = store.fleet_now_ms()
    if fleet_now is None:
        return False
    with store.engine.connect() as conn:
        return conn.execute(select(remote_commands.c.id).where(
            remote_commands.c.state.in_(sorted(policy.IN_FLIGHT)),
            remote_commands.c.expires_event_ms < fleet_now).limit(1)).first() is not None


def expire_due(store: Store, fleet_now: int | None = None) -> int:
    """Expire every in-flight command whose expiry the fleet's event time has passed."""
    fleet_now = store.fleet_now_ms() if fleet_now is None else fleet_now
    if fleet_now is None:
        return 0
    changed = 0
    with store.write(PG_LOCK_ALERTS) as conn:
        now = store.clock()
        due = conn.execute(select(remote_commands).where(
            remote_commands.c.state.in_(sorted(policy.IN_FLIGHT)),
            remote_commands.c.expires_event_ms < fleet_now)).mappings().all()
        for row in due:
            if policy.on_expiry_check(row["state"], fleet_now, row["expires_event_ms"]) \
                    != "expired":
                continue
            conn.execute(update(remote_commands).where(remote_commands.c.id == row["id"])
                         .values(state="expired", updated_wall_ms=now))
            _step(conn, row, "expired", actor=SYSTEM, now=now, at_event_ms=fleet_now,
                  expires_event_ms=row["expires_event_ms"])
            changed += 1
    if changed:
        log.info("commands_expired count=%s fleet_now=%s", changed, fleet_now)
    return changed


# ---------------------------------------------------------------------------- the cars' reports


def apply_reports(store: Store, records: Iterable[Mapping[str, Any]]) -> int:
    """Fold canonical ``vehicle_command_result`` records in (idempotent: a redelivered
    report changes nothing); return how many commands changed state."""
    records = [r for r in records if r["data"].get("command_id")]
    if not records:
        return 0
    changed = 0
    with store.write(PG_LOCK_ALERTS) as conn:
        now = store.clock()
        for rec in sorted(records, key=lambda r: (int(r["ts"]), int(r["seq"]))):
            changed += _apply_one(conn, rec, now)
    return changed


def _apply_one(conn: Connection, rec: Mapping[str, Any], now: int) -> int:
    data, vin, ts = rec["data"], rec["id"], int(rec["ts"])
    row = conn.execute(select(remote_commands).where(
        remote_commands.c.id == data["command_id"])).mappings().first()
    if row is None or row["vin"] != vin:
        # A refusal of a command we never sent (forged, or for another car): the car did
        # right; there is nothing of ours to change.
        log.warning("command_report_unmatched vin=%s command_id=%s status=%s reason=%s", vin,
                    data["command_id"], data["status"], data.get("reason"))
        return 0
    new = policy.on_report(row["state"], data["status"], ts, row["expires_event_ms"],
                           data.get("reason"))
    if new == row["state"]:
        return 0
    values: dict[str, Any] = {"state": new, "updated_wall_ms": now, "result_event_ms": ts}
    detail: dict[str, Any] = {}
    for field in ("reason", "detail"):
        if field in data:
            values[field] = data[field]
            detail[field] = data[field]
    if "result" in data:
        values["result"] = data["result"]
        detail["result"] = data["result"]
    verdict = None
    if new in ("succeeded", "failed") and row["alert_id"] is not None \
            and isinstance(data.get("result"), dict):
        verdict = _verdict(conn, row, data["result"], now)
        if verdict is not None:
            values["verdict"] = verdict
            detail["verdict"] = verdict
            detail["alert_id"] = row["alert_id"]
    conn.execute(update(remote_commands).where(remote_commands.c.id == row["id"])
                 .values(**values))
    _step(conn, row, new, actor=VEHICLE, now=now, at_event_ms=ts, **detail)
    log.info("command_%s id=%s vin=%s kind=%s verdict=%s", new, row["id"], vin, row["kind"],
             verdict)
    return 1


def _verdict(conn: Connection, row: Mapping[Any, Any], result: dict[str, Any], now: int
             ) -> str | None:
    """Label the command's alert from its result (when the result says something); staff
    labels and earlier labels stay: a result is one more piece of evidence, not the last
    word."""
    alert = conn.execute(select(alerts, case_alerts.c.case_id).outerjoin(
        case_alerts, case_alerts.c.alert_id == alerts.c.id).where(
        alerts.c.id == row["alert_id"])).mappings().first()
    if alert is None:
        return None
    judge = policy.VERDICTS.get((row["kind"], alert["type"]))
    verdict = judge(result) if judge is not None else None
    if verdict is None or alert["case_id"] is None:
        return verdict
    labelled = conn.execute(select(alert_outcomes.c.alert_id).where(
        alert_outcomes.c.alert_id == row["alert_id"])).first()
    if labelled is None:
        conn.execute(alert_outcomes.insert().values(
            alert_id=row["alert_id"], case_id=alert["case_id"], alert_type=alert["type"],
            detector=alert["detector"], detector_version=alert["detector_version"],
            outcome=verdict, labelled_wall_ms=now, labelled_by=label_source(row["id"])))
    return verdict


def label_source(command_id: str) -> str:
    """``labelled_by`` of an outcome a command's result set (GET /quality tells them apart)."""
    return f"command:{command_id}"


# ---------------------------------------------------------------------------- reads


def get_command(store: Store, command_id: str) -> dict[str, Any] | None:
    """A command with its steps (oldest first)."""
    with store.engine.connect() as conn:
        row = conn.execute(select(remote_commands).where(
            remote_commands.c.id == command_id)).mappings().first()
        if row is None:
            return None
        steps = [{str(k): v for k, v in r.items()} for r in conn.execute(
            select(remote_command_events).where(
                remote_command_events.c.command_id == command_id)
            .order_by(remote_command_events.c.id)).mappings()]
    return {**_public(row), "events": steps}


def list_commands(store: Store, *, vin: str | None = None, case_id: int | None = None,
                  state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest request first."""
    query = select(remote_commands)
    conditions = [c for c in (
        remote_commands.c.vin == vin if vin is not None else None,
        remote_commands.c.case_id == case_id if case_id is not None else None,
        remote_commands.c.state == state if state is not None else None) if c is not None]
    if conditions:
        query = query.where(and_(*conditions))
    query = query.order_by(remote_commands.c.requested_wall_ms.desc(),
                           remote_commands.c.id.desc()).limit(limit)
    with store.engine.connect() as conn:
        return [_public(r) for r in conn.execute(query).mappings()]

"""The OTA refusals cars report, kept per vehicle (``ota_refusals``).

A car reports every offer it refuses as ``rejected`` with a detail ``"<reason>: <text>"``.
Those naming their campaign (``action_id``) also move the campaign's action
(``storage.ota.apply_reports``); those naming none (a command the car could not
authenticate must not be able to fail a genuine update) change no action, but they are what
shows an operator that the cars refuse every offer, say for a signing key they do not pin.
Both are kept here, the newest ``REFUSALS_KEPT`` per vehicle, stored once however often the
report is redelivered. Times are the reports' event time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select

from storage.models import ota_refusals
from storage.store import Store


def report_target(data: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """(campaign id, attempt) a status report names: its ``action_id`` "<campaign
    id>:<attempt>", else its ``campaign_id`` alone; (None, None) when it names none."""
    action_id = data.get("action_id")
    if isinstance(action_id, str) and ":" in action_id:
        campaign_id, _, attempt = action_id.rpartition(":")
        if attempt.isdigit():
            return campaign_id, int(attempt)
    named = data.get("campaign_id")
    return (named if isinstance(named, str) else None), None


REFUSALS_KEPT = 50  # per vehicle, newest first: enough to see a pattern, bounded
REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
# How the bundled client names what an unauthenticated command claimed to be
# (simulators.ota_client): shown to the operator, never acted on.
CLAIMED_RE = re.compile(r"\(claimed campaign '([^']{1,64})' attempt")


def refusal_row(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored form of one ``rejected`` status record (None for any other status). The
    reason is the detail's leading code ("<reason>: <text>"), or "unspecified"."""
    data = record.get("data", {})
    if data.get("status") != "rejected":
        return None
    detail = str(data.get("detail") or "")
    code = detail.split(":", 1)[0].strip()
    campaign_id, attempt = report_target(data)
    claimed = CLAIMED_RE.search(detail) if campaign_id is None else None
    return {"vin": record["id"], "ts_event_ms": record["ts"],
            "seq": record.get("seq") if record.get("seq") is not None else -1,
            "reason": code if REASON_RE.fullmatch(code) else "unspecified",
            "detail": detail, "campaign_id": campaign_id, "attempt": attempt,
            "claimed_campaign_id": claimed.group(1) if claimed else None,
            "version": data.get("version")}


def record_refusals(store: Store, records: Iterable[Mapping[str, Any]]) -> int:
    """Keep the refusals among ``records`` per vehicle (the newest ``REFUSALS_KEPT`` each);
    a report seen before is not stored twice. Returns how many were new."""
    rows = [r for r in map(refusal_row, records) if r is not None]
    if not rows:
        return 0
    new = 0
    with store.write() as conn:
        for row in rows:
            seen = conn.execute(select(ota_refusals.c.vin).where(
                ota_refusals.c.vin == row["vin"], ota_refusals.c.ts_event_ms == row["ts_event_ms"],
                ota_refusals.c.seq == row["seq"])).first()
            if seen is None:
                conn.execute(ota_refusals.insert().values(**row))
                new += 1
        for vin in sorted({r["vin"] for r in rows}):
            oldest_kept = conn.execute(
                select(ota_refusals.c.ts_event_ms, ota_refusals.c.seq)
                .where(ota_refusals.c.vin == vin)
                .order_by(ota_refusals.c.ts_event_ms.desc(), ota_refusals.c.seq.desc())
                .offset(REFUSALS_KEPT - 1).limit(1)).first()
            if oldest_kept is not None:
                ts, seq = oldest_kept
                conn.execute(ota_refusals.delete().where(
                    ota_refusals.c.vin == vin,
                    (ota_refusals.c.ts_event_ms < ts)
                    | ((ota_refusals.c.ts_event_ms == ts) & (ota_refusals.c.seq < seq))))
    return new


def _refusal_public(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in ("vin", "ts_event_ms", "reason", "detail", "campaign_id",
                                "attempt", "claimed_campaign_id", "version")}


def vehicle_refusals(store: Store, vin: str, limit: int = 20) -> list[dict[str, Any]]:
    """A vehicle's latest refusals, newest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(ota_refusals).where(ota_refusals.c.vin == vin).order_by(
            ota_refusals.c.ts_event_ms.desc(), ota_refusals.c.seq.desc()).limit(limit))
        return [_refusal_public(r) for r in rows.mappings()]


def campaign_refusals(store: Store, campaign_id: str) -> dict[str, dict[str, Any]]:
    """Per vehicle, its latest refusal of this campaign: one naming it, or an
    unauthenticated command claiming to be it (``claimed_campaign_id``)."""
    latest: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        rows = conn.execute(select(ota_refusals).where(
            (ota_refusals.c.campaign_id == campaign_id)
            | (ota_refusals.c.claimed_campaign_id == campaign_id)).order_by(
            ota_refusals.c.ts_event_ms, ota_refusals.c.seq))
        for row in rows.mappings():
            latest[row["vin"]] = _refusal_public(row)
    return latest

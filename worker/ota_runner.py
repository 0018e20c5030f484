"""The OTA timer's work: step every active campaign and sign the commands it decides.

Runs in the leader worker: ``worker/agents.py`` polls ``OtaRunner.step_due`` from a Faust
timer and, when a step is due, has the view writer flush (so the store holds everything this
worker has read: the cars' latest state for the gate, their answers to offers) and calls
``OtaRunner.step_all`` in a thread. That returns ``(vin, command bytes)`` pairs for the
``ownercare.ota.commands`` topic; the bridge publishes them to ``vehicles/{vin}/ota/command``
with QoS 1. "Now" is the fleet's event time (the newest timestamp any device reported), never
the wall clock, and a step is due when that event time has moved on by the step interval
(``ota.timing``), so a simulated fleet at 3600× or a replayed one rolls out exactly as a real
one would.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from diagnostics.daily import PARKED_DRAW_12V, RESTING_12V, utc_day
from ota.engine import Command, StepResult, cancel, step
from ota.gate import VehicleSnapshot
from ota.manifest import offer_manifest, sign
from ota.model import CANCELABLE, Action, ActionState, Campaign, CampaignStatus, Release
from ota.regression import VehicleHealth
from ota.timing import StepClock
from storage import ota as ota_store
from storage.models import alerts, daily_indicators
from storage.store import Store
from vocab.eventtime import DAY_MS

log = logging.getLogger(__name__)


def action_id(campaign_id: str, attempt: int) -> str:
    """What a vehicle echoes in its status reports: the campaign and the attempt."""
    return f"{campaign_id}:{attempt}"


class OtaRunner:
    def __init__(self, store: Store, signing_key: Ed25519PrivateKey, step_s: float = 10.0
                 ) -> None:
        self.store = store
        self.key = signing_key
        self.clock = StepClock(max(1, int(step_s * 1000)))

    def step_due(self, newest_event_ms: int | None) -> bool:
        """Whether a step is due (``ota.timing``), and if so it counts as taken.
        ``newest_event_ms`` is the newest event time this worker has processed; without one
        (no partitions yet) the store's fleet time stands in."""
        marks = ota_store.active_marks(self.store)
        at = newest_event_ms if newest_event_ms else self.store.fleet_now_ms()
        if not self.clock.poll(at, marks):
            return False
        assert at is not None
        self.clock.stepped(at)
        return True

    def step_all(self) -> list[tuple[str, bytes]]:
        now = self.store.fleet_now_ms()
        if now is None:
            return []
        out: list[tuple[str, bytes]] = []
        for campaign in ota_store.active_campaigns(self.store):
            # The cars' state is read before their actions: the view writer stores a car's
            # reports before its telemetry, so telemetry sent after an offer's expiry, seen
            # here, means the car's answer to that offer (if any) is in the actions read next.
            # Up to the next wave: a step that advances the wave offers to its cars at once.
            vehicles = ota_store.vehicle_snapshots(self.store, ota_store.open_vins(
                self.store, campaign.id, campaign.current_wave + 1))
            actions = ota_store.load_actions(self.store, campaign.id)
            result = self.step_one(campaign, actions, vehicles, now)
            if result is None:
                continue
            ota_store.save_step(self.store, actions, result, now)
            for event in result.events:
                log.info("ota_%s campaign=%s %s", event["event"], campaign.id, " ".join(
                    f"{k}={v}" for k, v in event.items() if k not in ("event", "evidence")))
            out += [(cmd.vin, self.signed(cmd, now)) for cmd in result.commands]
        return out

    def step_one(self, campaign: Campaign, actions: Mapping[str, Action],
                 vehicles: Mapping[str, VehicleSnapshot], now: int) -> StepResult | None:
        if campaign.status is CampaignStatus.CANCELED:
            if not any(a.state in CANCELABLE for a in actions.values()):
                return None
            return cancel(campaign, actions, now)
        health = cohort_health(self.store, campaign, actions, now) \
            if any(a.state is ActionState.SUCCEEDED for a in actions.values()) else None
        return step(campaign, actions, vehicles, now, health)

    def signed(self, command: Command, now: int) -> bytes:
        if command.kind == "offer":
            assert command.release is not None
            assert command.expires_at is not None
            manifest = offer_manifest(Release(**command.release), vin=command.vin,
                                      campaign_id=command.campaign_id,
                                      attempt=command.attempt, issued_at=now,
                                      ttl_ms=command.expires_at - now)
        else:
            manifest = {"type": "ota.cancel", "vin": command.vin,
                        "campaign_id": command.campaign_id, "attempt": command.attempt,
                        "issued_at": now, "expires_at": now + DAY_MS}
        manifest["action_id"] = action_id(command.campaign_id, command.attempt)
        return orjson.dumps(sign(self.key, manifest))


def cohort_health(store: Store, campaign: Campaign, actions: Mapping[str, Action], now: int
                  ) -> list[VehicleHealth]:
    """Per vehicle of the campaign, since it updated (or, for cars not updated yet, since the
    first car updated): days observed, new alerts by type, mean 12 V resting voltage and mean
    12 V draw while parked (Ah per parked day). Cohort = the car's model."""
    updated_at = {vin: a.updated_at for vin, a in actions.items()
                  if a.state is ActionState.SUCCEEDED}
    if not updated_at:
        return []
    first = min(updated_at.values())
    since = {vin: updated_at.get(vin, first) for vin in actions}
    snapshots = ota_store.vehicle_snapshots(store, actions)
    vins = sorted(actions)
    # indicator -> vin -> the daily means after the update
    daily: dict[str, dict[str, list[float]]] = {RESTING_12V: {}, PARKED_DRAW_12V: {}}
    alert_counts: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(vins), 500):
            chunk = vins[start:start + 500]
            for vin, indicator, day, total, n in conn.execute(select(
                    daily_indicators.c.asset_id, daily_indicators.c.indicator,
                    daily_indicators.c.day, daily_indicators.c.sum, daily_indicators.c.n).where(
                    daily_indicators.c.asset_kind == "vehicle",
                    daily_indicators.c.asset_id.in_(chunk),
                    daily_indicators.c.indicator.in_(tuple(daily)))):
                # Whole days after the update only: the install day mixes before and after.
                if day > utc_day(since[vin]) and n:
                    daily[indicator].setdefault(vin, []).append(total / n)
            for vin, alert_type, first_seen in conn.execute(select(
                    alerts.c.asset_id, alerts.c.type, alerts.c.first_seen_event_ms).where(
                    alerts.c.asset_kind == "vehicle", alerts.c.asset_id.in_(chunk))):
                if first_seen >= since[vin]:
                    per_type = alert_counts.setdefault(vin, {})
                    per_type[alert_type] = per_type.get(alert_type, 0) + 1
    health = []
    for vin in vins:
        days = max(0.0, (now - since[vin]) / DAY_MS)
        snapshot = snapshots.get(vin)
        health.append(VehicleHealth(
            vin, vin in updated_at, days, alerts=alert_counts.get(vin, {}),
            v12_rest_volts=_mean(daily[RESTING_12V].get(vin)),
            parked_12v_ah_per_day=_mean(daily[PARKED_DRAW_12V].get(vin)),
            cohort=snapshot.model if snapshot else ""))
    return health


def _mean(values: list[float] | None) -> float | None:
    """The mean of a car's daily means (each whole day counts once), None without any."""
    return sum(values) / len(values) if values else None


def load_signing_key(path: str) -> Ed25519PrivateKey:
    from pathlib import Path

    from ota.manifest import load_private_key

    return load_private_key(Path(path).read_bytes())

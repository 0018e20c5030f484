"""The rollout engine: pure, deterministic, event-time.

``step(campaign, actions, vehicles, now)`` decides what happens next: which cars get an offer
(only those passing the health gate inside their maintenance window), which offers expired,
whether the current wave may advance (success threshold met and soak time passed), and
whether the campaign must pause (error threshold reached, or updated cars doing worse than
the rest of their cohort). ``apply_report`` folds a vehicle's progress report into its
action. Faust agents and a timer call these, persist the results and send the commands; the
engine itself does no I/O and never reads the clock.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ota.gate import VehicleSnapshot, gate_reasons
from ota.model import (
    CANCELABLE,
    ERRORS,
    RANK,
    TERMINAL,
    Action,
    ActionState,
    Campaign,
    CampaignStatus,
)
from ota.regression import VehicleHealth, compare

# Refusals a retry cannot fix: the offer itself is wrong for this car.
PERMANENT_REJECTIONS = frozenset({"bad_signature", "wrong_vehicle", "not_newer", "malformed",
                                  "bad_artifact"})


@dataclass(frozen=True, slots=True)
class Command:
    kind: str  # "offer" | "cancel"
    vin: str
    campaign_id: str
    attempt: int
    release: dict[str, Any] | None = None  # offers: what the agent signs into the manifest
    expires_at: int | None = None


@dataclass
class StepResult:
    campaign: Campaign
    actions: dict[str, Action]
    commands: list[Command] = field(default_factory=list)
    waiting: dict[str, list[str]] = field(default_factory=dict)  # vin -> gates it fails
    events: list[dict[str, Any]] = field(default_factory=list)


def wave_of(campaign_id: str, vins: Iterable[str], percents: list[float]) -> dict[str, int]:
    """Each targeted VIN's wave: a stable pseudo-random order (hash of campaign and VIN), cut
    at the cumulative percentages. Every VIN gets exactly one wave; a non-empty fleet always
    has at least one car in the first (canary) wave."""
    ordered = sorted(set(vins), key=lambda v: hashlib.sha256(
        f"{campaign_id}:{v}".encode()).hexdigest())
    n = len(ordered)
    cuts = [max(1, math.ceil(p / 100 * n)) if n else 0 for p in percents]
    cuts[-1] = n
    waves: dict[str, int] = {}
    start = 0
    for index, cut in enumerate(cuts):
        for vin in ordered[start:max(start, cut)]:
            waves[vin] = index
        start = max(start, cut)
    return waves


def plan(campaign: Campaign, vins: Iterable[str], now: int) -> dict[str, Action]:
    waves = wave_of(campaign.id, vins, [w.percent for w in campaign.waves])
    return {vin: Action(campaign.id, vin, wave, updated_at=now,
                        history=()) for vin, wave in sorted(waves.items())}


def backoff_ms(campaign: Campaign, attempt: int) -> int:
    return int(campaign.retry_base_s * 1000 * 2 ** (attempt - 1))


def _retry_or_fail(campaign: Campaign, action: Action, now: int, reason: str) -> Action:
    if action.attempt >= campaign.max_attempts:
        return action.moved(ActionState.FAILED, now,
                            f"{reason}; gave up after {action.attempt} attempts")
    return action.moved(ActionState.SCHEDULED, now, f"{reason}; retrying",
                        retry_at=now + backoff_ms(campaign, action.attempt))


def apply_report(campaign: Campaign, action: Action, reported: str, at: int, attempt: int,
                 detail: str = "") -> Action:
    """Fold one vehicle progress report into its action.

    Reports for an older attempt, or that would move the action backwards (redelivered or
    reordered messages), change nothing: the function is idempotent. The one exception is
    an older attempt's success: every attempt of a campaign offers the same release, so the
    car has it, whatever became of the later offer (given up on while the car's reports were
    still on their way, it would be refused as ``not_newer`` and counted as an error).
    """
    if action.state in TERMINAL:
        return action
    if attempt != action.attempt:
        if reported == "succeeded" and attempt < action.attempt:
            return action.moved(ActionState.SUCCEEDED, at,
                                f"vehicle reported succeeded for attempt {attempt}")
        return action
    why = f"vehicle reported {reported}" + (f": {detail}" if detail else "")
    if reported == "rejected":
        if action.state is not ActionState.OFFERED:
            return action
        code = detail.split(":", 1)[0].strip()
        if code in PERMANENT_REJECTIONS:
            return action.moved(ActionState.FAILED, at, why)
        return _retry_or_fail(campaign, action, at, why)
    if reported == "failed" and action.state in (ActionState.OFFERED, ActionState.DOWNLOADING,
                                                 ActionState.DOWNLOADED):
        return _retry_or_fail(campaign, action, at, why)  # before install: transient
    target = {"accepted": ActionState.DOWNLOADING, "offered": ActionState.OFFERED}.get(
        reported) or _state(reported)
    if target is None or RANK[target] <= RANK[action.state]:
        return action
    if target is ActionState.CANCELED and action.state not in CANCELABLE:
        return action
    return action.moved(target, at, why)


def _state(name: str) -> ActionState | None:
    try:
        return ActionState(name)
    except ValueError:
        return None


def wave_counts(actions: Mapping[str, Action], wave: int) -> tuple[int, int, int]:
    """(vehicles, succeeded, failed or rolled back) of one wave."""
    members = [a for a in actions.values() if a.wave == wave]
    return (len(members), sum(a.state is ActionState.SUCCEEDED for a in members),
            sum(a.state in ERRORS for a in members))


def step(campaign: Campaign, actions: Mapping[str, Action],
         vehicles: Mapping[str, VehicleSnapshot], now: int,
         health: list[VehicleHealth] | None = None) -> StepResult:
    """One step at the fleet's event time ``now``. ``vehicles`` holds what the store knows of
    the cars waiting for an offer (the gate) and of the cars with an open offer (whether it
    went unanswered)."""
    result = StepResult(campaign, dict(actions))
    if campaign.status is CampaignStatus.SCHEDULED and now >= campaign.start_at:
        result.campaign = campaign.moved(CampaignStatus.RUNNING)
        result.events.append({"event": "campaign_started", "at": now})
    if result.campaign.status is not CampaignStatus.RUNNING:
        return result
    _expire_offers(result, vehicles, now)
    if _check_wave(result, now, health):
        _offer(result, vehicles, now)
    return result


def _expire_offers(result: StepResult, vehicles: Mapping[str, VehicleSnapshot], now: int
                   ) -> None:
    """Expire the offers shown to be unanswered. A car's messages arrive in the order it sent
    them, so telemetry it sent after an offer's expiry, with the offer still unanswered, proves
    the offer went unanswered in time, however far the cloud's view lags behind the car. A car
    that stays silent is given up on once the fleet is ``max_state_age_s`` past the expiry
    (its telemetry could no longer vouch for it anyway)."""
    campaign = result.campaign
    ttl_ms = int(campaign.offer_ttl_s * 1000)
    silent_ms = int(campaign.gate.max_state_age_s * 1000)
    for vin, action in list(result.actions.items()):
        if action.state is not ActionState.OFFERED:
            continue
        expires_at = action.updated_at + ttl_ms
        car = vehicles.get(vin)
        if (car is not None and car.ts > expires_at) or now > expires_at + silent_ms:
            result.actions[vin] = _retry_or_fail(campaign, action, now,
                                                 "offer expired unanswered")


def _pause(result: StepResult, now: int, reason: str, evidence: dict[str, Any]) -> None:
    result.campaign = result.campaign.moved(CampaignStatus.PAUSED, pause_reason=reason,
                                            pause_evidence=evidence)
    result.events.append({"event": "campaign_paused", "at": now, "reason": reason,
                          "evidence": evidence})


def _check_wave(result: StepResult, now: int, health: list[VehicleHealth] | None) -> bool:
    """Pause, soak, advance or complete; True while offers may go out."""
    campaign = result.campaign
    wave = campaign.waves[campaign.current_wave]
    n, ok, errors = wave_counts(result.actions, campaign.current_wave)
    if n and errors / n >= wave.error_threshold:
        _pause(result, now, "error_threshold", {
            "wave": campaign.current_wave, "vehicles": n, "failed_or_rolled_back": errors,
            "error_threshold": wave.error_threshold})
        return False
    if n == 0:  # a small fleet cut at small percentages: nothing to offer, judge or soak
        return _move_on(result, now, health)
    if ok / n < wave.success_threshold:
        return True
    if campaign.wave_succeeded_at is None:
        campaign = result.campaign = replace(campaign, wave_succeeded_at=now)
        result.events.append({"event": "wave_succeeded", "at": now,
                              "wave": campaign.current_wave, "succeeded": ok, "vehicles": n})
    if health:
        verdict = compare(health)  # stratified by cohort (model) inside
        if verdict.regressed:
            _pause(result, now, "regression", {
                "wave": campaign.current_wave, "updated": verdict.updated,
                "baseline": verdict.baseline, "findings": verdict.findings})
            return False
    assert campaign.wave_succeeded_at is not None
    if (now - campaign.wave_succeeded_at) / 1000 < campaign.soak_s:
        return True  # soaking: the wave's own stragglers may still be offered
    return _move_on(result, now, health)


def _move_on(result: StepResult, now: int, health: list[VehicleHealth] | None) -> bool:
    """Complete the campaign after its last wave, or open the next wave and judge it at once
    (it may be empty too)."""
    campaign = result.campaign
    if campaign.current_wave + 1 == len(campaign.waves):
        if all(a.state in TERMINAL for a in result.actions.values()):
            result.campaign = campaign.moved(CampaignStatus.COMPLETED)
            result.events.append({"event": "campaign_completed", "at": now})
            return False
        return True
    result.campaign = replace(campaign, current_wave=campaign.current_wave + 1,
                              wave_succeeded_at=None)
    result.events.append({"event": "wave_advanced", "at": now,
                          "wave": campaign.current_wave + 1})
    return _check_wave(result, now, health)


def _offer(result: StepResult, vehicles: Mapping[str, VehicleSnapshot], now: int) -> None:
    campaign = result.campaign
    ttl_ms = int(campaign.offer_ttl_s * 1000)
    for vin, action in sorted(result.actions.items()):
        if action.wave > campaign.current_wave or action.state is not ActionState.SCHEDULED:
            continue
        if action.next_attempt_at > now:
            result.waiting[vin] = ["retry_backoff"]
            continue
        reasons = gate_reasons(vehicles.get(vin), campaign.gate, campaign.window, now)
        if reasons:
            result.waiting[vin] = reasons
            continue
        car = vehicles[vin]
        # The evidence the gate passed on, kept in the action's history for audit.
        result.actions[vin] = action.moved(
            ActionState.OFFERED, now,
            f"health gate passed: telemetry at {car.ts}, speed {car.speed_kmh} km/h, "
            f"{car.system_state}, SoC {car.soc_percent} %, 12 V {car.v12_volts} V")
        result.commands.append(Command("offer", vin, campaign.id, action.attempt,
                                       campaign.release.as_dict(), now + ttl_ms))


def cancel(campaign: Campaign, actions: Mapping[str, Action], now: int) -> StepResult:
    """Cancel the campaign: cancel commands to every car that has not started installing."""
    result = StepResult(campaign.moved(CampaignStatus.CANCELED), dict(actions))
    for vin, action in sorted(actions.items()):
        if action.state in CANCELABLE:
            result.actions[vin] = action.moved(ActionState.CANCELED, now, "campaign canceled")
            if action.state is not ActionState.SCHEDULED:  # the car knows of it: tell it
                result.commands.append(Command("cancel", vin, campaign.id, action.attempt))
    result.events.append({"event": "campaign_canceled", "at": now})
    return result

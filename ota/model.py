"""The OTA vocabulary (after hawkBit): releases, campaigns, waves, per-vehicle actions.

Everything here is plain data with validation; statuses are persisted by name. Times are
event-time epoch milliseconds, like the telemetry the engine gates on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import semver

SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
COMPONENT_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HHMM_RE: Final = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def parse_version(text: str) -> semver.Version:
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not a semantic version like 2.4.1") from None


@dataclass(frozen=True, slots=True)
class Release:
    """One software release for one component (ECU)."""

    version: str
    component: str
    artifact_url: str
    size: int
    sha256: str
    notes: str = ""
    # A release that deliberately installs an older version (after a bad release): the
    # signed manifest says so, and only then does a vehicle accept a lower version.
    rollback: bool = False

    def __post_init__(self) -> None:
        parse_version(self.version)
        if not COMPONENT_RE.fullmatch(self.component):
            raise ValueError(f"component {self.component!r} must be 1-64 letters, digits, "
                             "_ . -")
        if not self.artifact_url.startswith(("https://", "http://")):
            raise ValueError(f"artifact_url {self.artifact_url!r} must be an http(s) URL")
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if not SHA256_RE.fullmatch(self.sha256):
            raise ValueError("sha256 must be 64 lower-case hex digits")

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "component": self.component,
                "artifact_url": self.artifact_url, "size": self.size, "sha256": self.sha256,
                "notes": self.notes, "rollback": self.rollback}


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELED = "canceled"


CAMPAIGN_MOVES: Final[dict[CampaignStatus, frozenset[CampaignStatus]]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING,
                                     CampaignStatus.CANCELED}),
    CampaignStatus.SCHEDULED: frozenset({CampaignStatus.RUNNING, CampaignStatus.PAUSED,
                                         CampaignStatus.CANCELED}),
    CampaignStatus.RUNNING: frozenset({CampaignStatus.PAUSED, CampaignStatus.COMPLETED,
                                       CampaignStatus.CANCELED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.CANCELED}),
    CampaignStatus.COMPLETED: frozenset(),
    CampaignStatus.CANCELED: frozenset(),
}


class ActionState(StrEnum):
    SCHEDULED = "scheduled"
    OFFERED = "offered"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    INSTALLING = "installing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    CANCELED = "canceled"


TERMINAL: Final = frozenset({ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK,
                             ActionState.CANCELED})
ERRORS: Final = frozenset({ActionState.FAILED, ActionState.ROLLED_BACK})
# Progress within one attempt. A retry starts a new attempt at SCHEDULED, so an action's
# (attempt, rank) only ever grows: "states only move forward".
RANK: Final[dict[ActionState, int]] = {
    ActionState.SCHEDULED: 0, ActionState.OFFERED: 1, ActionState.DOWNLOADING: 2,
    ActionState.DOWNLOADED: 3, ActionState.INSTALLING: 4, **dict.fromkeys(TERMINAL, 5)}
# Cancel reaches only vehicles that have not started installing.
CANCELABLE: Final = frozenset({ActionState.SCHEDULED, ActionState.OFFERED,
                               ActionState.DOWNLOADING, ActionState.DOWNLOADED})


@dataclass(frozen=True, slots=True)
class Transition:
    at: int
    state: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Action:
    """One vehicle's update within a campaign."""

    campaign_id: str
    vin: str
    wave: int
    state: ActionState = ActionState.SCHEDULED
    attempt: int = 1
    next_attempt_at: int = 0  # when a retry may be offered (backoff), event time
    updated_at: int = 0
    history: tuple[Transition, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.campaign_id}:{self.vin}"

    def moved(self, state: ActionState, at: int, reason: str, *, retry_at: int | None = None
              ) -> Action:
        """This action in ``state`` (a retry when ``retry_at`` is given); refuses moving
        backwards or out of a terminal state."""
        if self.state in TERMINAL:
            raise ValueError(f"action {self.id} is {self.state}: it cannot become {state}")
        if retry_at is not None:
            if state is not ActionState.SCHEDULED:
                raise ValueError("a retry starts again at scheduled")
            attempt = self.attempt + 1
        else:
            attempt = self.attempt
            if RANK[state] <= RANK[self.state]:
                raise ValueError(f"action {self.id} cannot go from {self.state} back to "
                                 f"{state}")
        return replace(self, state=state, attempt=attempt, updated_at=at,
                       next_attempt_at=retry_at if retry_at is not None else
                       self.next_attempt_at,
                       history=(*self.history, Transition(at, state.value, attempt, reason)))


@dataclass(frozen=True, slots=True)
class Wave:
    percent: float  # cumulative share of the targeted fleet updated by the end of this wave
    success_threshold: float = 0.95  # share of the wave succeeded before the next may start
    error_threshold: float = 0.05  # share of the wave failed/rolled back that pauses it

    def __post_init__(self) -> None:
        if not 0 < self.percent <= 100:
            raise ValueError(f"wave percent must be in (0, 100], got {self.percent}")
        for name in ("success_threshold", "error_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Daily window in the vehicle's local time; may cross midnight (22:00-05:00).

    ``timezone`` (IANA) is used for cars that do not report their own.
    """

    start: str = "00:00"
    end: str = "23:59"
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            if not HHMM_RE.fullmatch(getattr(self, name)):
                raise ValueError(f"window {name} {getattr(self, name)!r} must be HH:MM")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"window timezone {self.timezone!r} is not an IANA time zone "
                             "like Europe/Berlin") from None

    def contains(self, minute_of_day: int) -> bool:
        start, end = _minutes(self.start), _minutes(self.end)
        if start <= end:
            return start <= minute_of_day <= end
        return minute_of_day >= start or minute_of_day <= end


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """When a car may be offered an update."""

    min_soc_percent: float = 30.0
    min_12v_volts: float = 12.2
    allow_while_charging: bool = False
    max_state_age_s: float = 6 * 3600  # telemetry older than this cannot vouch for the car
    blocking_alert_types: frozenset[str] = frozenset({"weak_12v_battery"})


@dataclass(frozen=True, slots=True)
class Targets:
    """Which cars a campaign is for: the named VINs plus the cars of the named models (every
    car in the regions when only regions are named), narrowed by every other criterion given:
    in one of ``regions`` by last known position (``ota/regions.py``), on one of
    ``from_versions``. Resolved once, when the campaign starts (``storage.ota``)."""

    models: frozenset[str] = frozenset()
    from_versions: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    vins: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    release: Release
    waves: tuple[Wave, ...] = (Wave(1), Wave(10), Wave(100))
    window: MaintenanceWindow = MaintenanceWindow()
    gate: GatePolicy = GatePolicy()
    soak_s: float = 24 * 3600
    start_at: int = 0
    status: CampaignStatus = CampaignStatus.DRAFT
    current_wave: int = 0
    wave_succeeded_at: int | None = None  # when the current wave met its success threshold
    pause_reason: str | None = None
    pause_evidence: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 3
    retry_base_s: float = 15 * 60
    offer_ttl_s: float = 3600  # an offer nobody acted on expires (and is retried)
    targets: Targets = Targets()

    def __post_init__(self) -> None:
        if not self.waves:
            raise ValueError("a campaign needs at least one wave")
        cumulative = [w.percent for w in self.waves]
        if cumulative != sorted(set(cumulative)) or cumulative[-1] != 100:
            raise ValueError(f"wave percents must rise strictly and end at 100, got "
                             f"{cumulative}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def moved(self, status: CampaignStatus, **changes: Any) -> Campaign:
        if status is not self.status and status not in CAMPAIGN_MOVES[self.status]:
            raise ValueError(f"campaign {self.id} cannot go from {self.status} to {status}")
        return replace(self, status=status, **changes)

"""The simulated vehicle's OTA client: pure, event-time, one instance per car.

A car receives signed commands on ``vehicles/{vin}/ota/command`` and answers with progress
reports on ``vehicles/{vin}/ota/status``. This module is the car's side of that exchange,
without I/O or a clock: the caller hands it each command with the event time it arrived at
and what the car itself knows about its state, and calls ``advance(now, car)`` as simulated
time passes; both return the reports due (event time ``ts``, per-device ``seq``).

What the car does (after Uptane / TUF, see ``ota.manifest``):

* verify every command against the pinned public key: signature, this VIN, expiry, and for
  offers a version newer than the installed one (unless the manifest is a signed rollback).
  A refused offer is reported ``rejected`` with detail ``"<reason>: <text>"``; only when the
  signature and VIN checked out does the report name the campaign and attempt (a forged or
  replayed command must not be able to fail a genuine update);
* re-check its own state, never trusting the cloud's health gate: an offer while driving,
  with the ignition on, a weak 12 V battery or a low traction battery is ``rejected`` with
  ``not_ready: ...`` (a transient reason: the cloud retries later);
* accepted: ``accepted`` -> ``downloading`` -> (size / bandwidth later) the artifact's size
  and SHA-256 are checked (a mismatch is ``failed`` with ``bad_artifact: ...``) ->
  ``downloaded`` -> ``installing`` (only once parked with the ignition off; a car driving
  away waits) -> ``succeeded``, or at ``failure_rate`` ``failed`` then ``rolled_back``. The
  failure draws come from an RNG seeded by the car's VIN, so a run replays identically;
* a signed cancel before installing ends the attempt with ``canceled``; once installing it
  is too late (installing cannot be interrupted safely) and the cancel changes nothing;
* the same command delivered twice (QoS 1 redelivery, or a replay) changes nothing.

Versions: a release marked bad in ``ClientConfig.bad_releases`` (``"2.0.0"`` or
``"bms@2.0.0"``) sets ``bad_since`` when installed; the fleet model reads it to drain that
car's 12 V battery faster while parked (``simulators.physics.battery12v.Battery12V``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ota.manifest import ManifestRejected, canonical, check_artifact, verify
from ota.model import Release
from vocab.eventtime import HOUR_MS, MINUTE_MS, SECOND_MS

log = logging.getLogger(__name__)

PARKED_STATES: Final = frozenset({"OFF", "LOCK"})  # VSS LowVoltageSystemState, car off
MAX_ID_LEN: Final = 64  # the status contract's limit for campaign_id / action_id
MAX_DETAIL_LEN: Final = 500
# Refusals of a manifest whose signature and VIN checked out: the campaign and attempt it
# names are genuine, so the report may name them (the cloud acts on them).
AUTHENTIC_REFUSALS: Final = frozenset({"expired", "not_newer"})


# --------------------------------------------------------------------------------------------
# Inputs: configuration, the car's own state, the artifacts the "CDN" serves


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How the simulated cars behave; one config for the whole fleet."""

    bandwidth_bytes_per_s: float = 2_000_000.0  # ~16 Mbit/s LTE
    install_ms: int = 10 * MINUTE_MS
    rollback_ms: int = 5 * MINUTE_MS
    failure_rate: float = 0.0  # share of installs that fail and roll back
    min_v12_volts: float = 12.0  # the car's own floors (the cloud's gate may be stricter)
    min_soc_percent: float = 15.0
    refuse_while_charging: bool = False
    install_recheck_ms: int = 5 * MINUTE_MS  # downloaded but not parked: look again then
    max_install_wait_ms: int = 24 * HOUR_MS  # then give up (a transient failure, retried)
    bad_releases: frozenset[str] = frozenset()  # "2.0.0" or "component@2.0.0"

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in [0, 1], got {self.failure_rate}")
        if self.bandwidth_bytes_per_s <= 0:
            raise ValueError("bandwidth must be positive")
        for name in ("install_ms", "rollback_ms", "install_recheck_ms", "max_install_wait_ms"):
            if getattr(self, name) < 0 or (name == "install_recheck_ms"
                                            and getattr(self, name) == 0):
                raise ValueError(f"{name} must be positive")

    def is_bad(self, release: Release) -> bool:
        return (release.version in self.bad_releases
                or f"{release.component}@{release.version}" in self.bad_releases)


@dataclass(frozen=True, slots=True)
class CarState:
    """What the car knows about itself at event time ``ts`` (its latest telemetry)."""

    ts: int
    speed_kmh: float | None = None
    system_state: str | None = None  # VSS LowVoltageSystemState
    v12_volts: float | None = None
    soc_percent: float | None = None
    charging: bool = False


def simulated_artifact(url: str, size: int) -> bytes:
    """The bytes the simulated CDN serves at ``url``: deterministic, so a release built with
    ``simulated_release`` verifies, and any other SHA-256 fails the artifact check."""
    return hashlib.shake_256(url.encode()).digest(size)


def simulated_release(version: str, component: str, url: str, size: int = 4096, *,
                      notes: str = "", rollback: bool = False) -> Release:
    """A release whose SHA-256 matches what the simulated CDN serves for ``url``."""
    sha = hashlib.sha256(simulated_artifact(url, size)).hexdigest()
    return Release(version, component, url, size, sha, notes, rollback)


@dataclass
class ArtifactStore:
    """The simulated CDN: bytes by SHA-256 when registered (a test can register tampered
    bytes under a release's hash), else ``simulated_artifact(url, size)``."""

    by_sha256: dict[str, bytes] = field(default_factory=dict)

    def fetch(self, release: Release) -> bytes:
        found = self.by_sha256.get(release.sha256)
        return found if found is not None else simulated_artifact(release.artifact_url,
                                                                   release.size)


# --------------------------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True, slots=True)
class Report:
    """One progress report, ready for ``vehicles/{vin}/ota/status``."""

    ts: int
    seq: int
    vin: str
    status: str
    campaign_id: str | None
    attempt: int | None
    version: str | None = None
    progress: float | None = None
    detail: str | None = None

    @property
    def action_id(self) -> str | None:
        """``"<campaign id>:<attempt>"``: how the cloud (``storage.ota.apply_reports``) tells
        which attempt a report is about; also signed into the manifest as ``action_id``."""
        if self.campaign_id is None or self.attempt is None:
            return None
        action_id = f"{self.campaign_id}:{self.attempt}"
        return action_id if len(action_id) <= MAX_ID_LEN else None

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ts": self.ts, "seq": self.seq, "vin": self.vin,
                                "status": self.status}
        optional = {"campaign_id": self.campaign_id, "action_id": self.action_id,
                    "version": self.version, "progress": self.progress, "detail": self.detail}
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


# --------------------------------------------------------------------------------------------
# The client


class Stage(StrEnum):
    DOWNLOADING = "downloading"
    AWAITING_INSTALL = "awaiting_install"  # downloaded, waiting to be parked
    INSTALLING = "installing"
    ROLLING_BACK = "rolling_back"


@dataclass
class Job:
    """The attempt the car is working on (one at a time)."""

    campaign_id: str
    attempt: int
    release: Release
    stage: Stage
    next_at: int  # event time of the next step
    downloaded_at: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return self.campaign_id, self.attempt


class OtaClient:
    def __init__(self, vin: str, public_key: Ed25519PublicKey | None,
                 installed: Mapping[str, str] | None = None, *,
                 config: ClientConfig | None = None, seed: int = 1,
                 artifacts: ArtifactStore | None = None,
                 next_seq: Callable[[], int] | None = None) -> None:
        self.vin = vin
        self.public_key = public_key
        self.installed: dict[str, str] = dict(installed or {})
        self.config = config or ClientConfig()
        self.artifacts = artifacts or ArtifactStore()
        self.rng = random.Random(f"ota-{seed}-{vin}")  # per car: replays draw the same
        self._own_seq = 0
        self.next_seq = next_seq or self._next_own_seq
        self.job: Job | None = None
        self.seen: set[tuple[str, int]] = set()  # (campaign, attempt) offers and cancels
        self.latest_attempt: dict[str, int] = {}
        self.bad_since: int | None = None  # a bad release is installed since (event time)
        self.refused_cancels: list[str] = []  # reasons, for logs and tests

    def _next_own_seq(self) -> int:
        self._own_seq += 1
        return self._own_seq

    def installed_version(self, component: str) -> str:
        return self.installed.get(component, "0.0.0")

    def next_due(self) -> int | None:
        return self.job.next_at if self.job is not None else None

    # ---------------------------------------------------------------- commands

    def on_command(self, command: Any, now: int, car: CarState | None) -> list[Report]:
        """One command arrived at event time ``now``; the reports it causes (due at ``now``).
        Steps of the current job due before ``now`` are reported first."""
        reports = self.advance(now, car)
        manifest = command.get("manifest") if isinstance(command, dict) else None
        kind = manifest.get("type") if isinstance(manifest, dict) else None
        if kind == "ota.cancel":
            reports += self._on_cancel(command, manifest, now)
        else:
            reports += self._on_offer(command, manifest, now, car)
        return reports

    def _on_offer(self, command: Any, manifest: Any, now: int,
                  car: CarState | None) -> list[Report]:
        campaign_id, attempt = _identity(manifest)
        if campaign_id is not None and attempt is not None:
            key = (campaign_id, attempt)
            if key in self.seen or attempt < self.latest_attempt.get(campaign_id, 0):
                log.info("ota_duplicate_offer vin=%s campaign=%s attempt=%s", self.vin,
                         campaign_id, attempt)
                return []  # redelivered, replayed, or overtaken by a newer attempt
        component = _peek_component(manifest)
        try:
            if self.public_key is None:
                raise ManifestRejected("bad_signature", "no public key is pinned")
            if kind_of(manifest) != "ota.offer":
                raise ManifestRejected("malformed", f"unknown command type "
                                       f"{kind_of(manifest)!r}")
            if campaign_id is None or attempt is None:
                raise ManifestRejected("malformed", "campaign_id (1-64 characters) and "
                                       "attempt (>= 1) are required")
            accepted = verify(self.public_key, command, vin=self.vin,
                              installed_version=self.installed_version(component), now=now)
        except ManifestRejected as exc:
            log.info("ota_offer_refused vin=%s campaign=%s reason=%s", self.vin, campaign_id,
                     exc.reason)
            if exc.reason in AUTHENTIC_REFUSALS and campaign_id and attempt:
                self.seen.add((campaign_id, attempt))
                return [self._report(now, "rejected", campaign_id, attempt, None,
                                     detail=str(exc))]
            # Not provably from the cloud for this car: reported without the campaign and
            # attempt it claims, or anyone able to publish a forged (or another car's)
            # command could fail this car's genuine update.
            claimed = f" (claimed campaign {campaign_id!r} attempt {attempt})"
            return [self._report(now, "rejected", None, None, None,
                                 detail=str(exc) + claimed)]
        assert campaign_id is not None
        assert attempt is not None
        release = accepted.release
        # Authentic from here on: it counts as seen (a replay of it changes nothing).
        self.seen.add((campaign_id, attempt))
        self.latest_attempt[campaign_id] = max(attempt, self.latest_attempt.get(campaign_id, 0))
        busy = self._busy_with(campaign_id)
        if busy:
            return [self._report(now, "rejected", campaign_id, attempt, release.version,
                                 detail=busy)]
        not_ready = self._not_ready(car, now)
        if not_ready:
            log.info("ota_offer_not_ready vin=%s campaign=%s why=%s", self.vin, campaign_id,
                     not_ready)
            return [self._report(now, "rejected", campaign_id, attempt, release.version,
                                 detail=f"not_ready: {not_ready}")]
        # A newer attempt of the campaign we are still downloading: the cloud gave up on the
        # old one (its reports would be ignored), so start over with this one.
        download_ms = int(release.size / self.config.bandwidth_bytes_per_s * SECOND_MS)
        self.job = Job(campaign_id, attempt, release, Stage.DOWNLOADING, now + download_ms)
        log.info("ota_offer_accepted vin=%s campaign=%s attempt=%s version=%s", self.vin,
                 campaign_id, attempt, release.version)
        return [self._report(now, "accepted", campaign_id, attempt, release.version, 0.0),
                self._report(now, "downloading", campaign_id, attempt, release.version, 0.0)]

    def _busy_with(self, campaign_id: str) -> str | None:
        job = self.job
        if job is None:
            return None
        if job.campaign_id != campaign_id:
            return (f"busy: updating {job.release.component} to {job.release.version} "
                    f"for campaign {job.campaign_id}")
        if job.stage in (Stage.INSTALLING, Stage.ROLLING_BACK):
            return f"busy: attempt {job.attempt} of this campaign is {job.stage}"
        return None

    def _not_ready(self, car: CarState | None, now: int) -> str | None:
        """Why the car's own state forbids starting an update now (None: it may)."""
        if car is None:
            return "state unknown (no telemetry yet)"
        if car.speed_kmh is None or car.speed_kmh > 0:
            return (f"driving ({car.speed_kmh:.1f} km/h)" if car.speed_kmh is not None
                    else "speed unknown")
        if car.system_state not in PARKED_STATES:
            return f"ignition {car.system_state or 'unknown'}"
        cfg = self.config
        if car.v12_volts is not None and car.v12_volts < cfg.min_v12_volts:
            return f"low_12v ({car.v12_volts:.2f} V < {cfg.min_v12_volts:.2f} V)"
        if car.soc_percent is not None and car.soc_percent < cfg.min_soc_percent:
            return f"low_soc ({car.soc_percent:.1f} % < {cfg.min_soc_percent:.1f} %)"
        if car.charging and cfg.refuse_while_charging:
            return "charging"
        return None

    def _on_cancel(self, command: Any, manifest: Any, now: int) -> list[Report]:
        campaign_id, attempt = _identity(manifest)
        try:
            if self.public_key is None:
                raise ManifestRejected("bad_signature", "no public key is pinned")
            verify_cancel(self.public_key, command, vin=self.vin, now=now)
            if campaign_id is None or attempt is None:
                raise ManifestRejected("malformed", "campaign_id and attempt are required")
        except ManifestRejected as exc:
            # Not reported: a "rejected" report would read as a refused *offer* at the cloud.
            log.warning("ota_cancel_refused vin=%s campaign=%s reason=%s", self.vin,
                        campaign_id, exc.reason)
            self.refused_cancels.append(exc.reason)
            return []
        key = (campaign_id, attempt)
        job = self.job
        if job is not None and job.key == key and job.stage in (Stage.DOWNLOADING,
                                                                 Stage.AWAITING_INSTALL):
            self.job = None
            log.info("ota_canceled vin=%s campaign=%s attempt=%s", self.vin, campaign_id,
                     attempt)
            return [self._report(now, "canceled", campaign_id, attempt, job.release.version,
                                 detail="canceled by the cloud before installing")]
        # Not started yet (an offer still on its way): remember, so it is never started.
        self.seen.add(key)
        self.latest_attempt[campaign_id] = max(attempt, self.latest_attempt.get(campaign_id, 0))
        return []

    # ---------------------------------------------------------------- time

    def advance(self, now: int, car: CarState | None) -> list[Report]:
        """Every step of the current job due at or before ``now``, in event-time order."""
        reports: list[Report] = []
        while self.job is not None and self.job.next_at <= now:
            reports += self._step(self.job, car)
        return reports

    def _step(self, job: Job, car: CarState | None) -> list[Report]:
        at, version = job.next_at, job.release.version
        cid, attempt = job.campaign_id, job.attempt
        if job.stage is Stage.DOWNLOADING:
            try:
                check_artifact(job.release, self.artifacts.fetch(job.release))
            except ManifestRejected as exc:
                self.job = None
                log.warning("ota_artifact_refused vin=%s campaign=%s detail=%s", self.vin, cid,
                            exc)
                return [self._report(at, "failed", cid, attempt, version, detail=str(exc))]
            job.stage, job.downloaded_at = Stage.AWAITING_INSTALL, at
            return [self._report(at, "downloaded", cid, attempt, version, 100.0),
                    *self._try_install(job, at, car)]
        if job.stage is Stage.AWAITING_INSTALL:
            return self._try_install(job, at, car)
        if job.stage is Stage.INSTALLING:
            if self.rng.random() < self.config.failure_rate:
                job.stage, job.next_at = Stage.ROLLING_BACK, at + self.config.rollback_ms
                return [self._report(at, "failed", cid, attempt, version,
                                     detail="install_failed: verification after install "
                                     "failed; rolling back")]
            self.job = None
            self._installed(job.release, at)
            return [self._report(at, "succeeded", cid, attempt, version, 100.0)]
        # ROLLING_BACK
        self.job = None
        previous = self.installed_version(job.release.component)
        return [self._report(at, "rolled_back", cid, attempt, version,
                             detail=f"rolled back to {previous}")]

    def _try_install(self, job: Job, at: int, car: CarState | None) -> list[Report]:
        # Installing disables the car for minutes: only when parked with the ignition off,
        # whatever the cloud thought when it offered (the owner may have driven off since).
        blocker = self._not_ready(car, at)
        if blocker is None:
            job.stage, job.next_at = Stage.INSTALLING, at + self.config.install_ms
            return [self._report(at, "installing", job.campaign_id, job.attempt,
                                 job.release.version, 0.0)]
        if at - job.downloaded_at >= self.config.max_install_wait_ms:
            self.job = None
            return [self._report(at, "failed", job.campaign_id, job.attempt,
                                 job.release.version,
                                 detail=f"not_ready: no chance to install within "
                                 f"{self.config.max_install_wait_ms // HOUR_MS} h "
                                 f"({blocker})")]
        job.next_at = at + self.config.install_recheck_ms
        return []

    def _installed(self, release: Release, at: int) -> None:
        self.installed[release.component] = release.version
        bad = any(self.config.bad_releases & {v, f"{c}@{v}"} for c, v in self.installed.items())
        if bad and self.bad_since is None:
            self.bad_since = at
        elif not bad:
            self.bad_since = None  # a fixed (or rolled-back) release replaced the bad one
        log.info("ota_installed vin=%s component=%s version=%s bad=%s", self.vin,
                 release.component, release.version, bad)

    def _report(self, ts: int, status: str, campaign_id: str | None, attempt: int | None,
                version: str | None, progress: float | None = None,
                detail: str | None = None) -> Report:
        if detail is not None:
            detail = detail[:MAX_DETAIL_LEN]
        if version is not None and len(version) > MAX_ID_LEN:
            version = None
        return Report(ts, self.next_seq(), self.vin, status, campaign_id, attempt, version,
                      progress, detail)


# --------------------------------------------------------------------------------------------
# Helpers


def kind_of(manifest: Any) -> Any:
    return manifest.get("type") if isinstance(manifest, dict) else None


def _identity(manifest: Any) -> tuple[str | None, int | None]:
    """(campaign id, attempt) of a manifest, each None when absent or unusable."""
    if not isinstance(manifest, dict):
        return None, None
    cid, attempt = manifest.get("campaign_id"), manifest.get("attempt")
    ok_cid = cid if isinstance(cid, str) and 0 < len(cid) <= MAX_ID_LEN else None
    ok_attempt = (attempt if isinstance(attempt, int) and not isinstance(attempt, bool)
                  and 1 <= attempt <= 1_000_000 else None)
    return ok_cid, ok_attempt


def _peek_component(manifest: Any) -> str:
    """Which installed version the (not yet verified) offer is compared with; ``verify``
    checks the signature before the version, so a forged component name gains nothing."""
    release = manifest.get("release") if isinstance(manifest, dict) else None
    component = release.get("component") if isinstance(release, dict) else None
    return component if isinstance(component, str) else ""


def verify_cancel(public_key: Ed25519PublicKey, command: Any, *, vin: str, now: int) -> None:
    """A cancel is checked like an offer (signature, vehicle, expiry) without the version
    check; raises ManifestRejected."""
    if not isinstance(command, dict) or not isinstance(command.get("manifest"), dict) \
            or not isinstance(command.get("signature"), str):
        raise ManifestRejected("malformed", "a command is {manifest: {...}, signature: str}")
    manifest = command["manifest"]
    try:
        signed = canonical(manifest)
    except TypeError as exc:
        raise ManifestRejected("malformed", f"manifest is not canonical JSON: {exc}") from None
    try:
        public_key.verify(base64.b64decode(command["signature"], validate=True), signed)
    except (InvalidSignature, ValueError):
        raise ManifestRejected("bad_signature", "the cancel is not signed by the pinned "
                               "key (or was changed after signing)") from None
    if manifest.get("type") != "ota.cancel":
        raise ManifestRejected("malformed", "not a cancel")
    if manifest.get("vin") != vin:
        raise ManifestRejected("wrong_vehicle", f"the cancel is for {manifest.get('vin')!r}")
    expires_at = manifest.get("expires_at")
    if not isinstance(expires_at, int) or now > expires_at:
        raise ManifestRejected("expired", f"the cancel expired at {expires_at}; now {now}")


def cancel_manifest(*, vin: str, campaign_id: str, attempt: int, issued_at: int,
                    ttl_ms: int) -> dict[str, Any]:
    """The cancel the cloud signs (the shape ``verify_cancel`` expects); for tests and the
    cloud side, next to ``ota.manifest.offer_manifest``."""
    return {"type": "ota.cancel", "vin": vin, "campaign_id": campaign_id, "attempt": attempt,
            "issued_at": issued_at, "expires_at": issued_at + ttl_ms}

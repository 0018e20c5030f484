"""The simulated car's OTA client: what it accepts, refuses, reports and when (event time)."""

from __future__ import annotations

import copy
import hashlib
import statistics
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.daily import PARKED_DRAW_12V, RESTING_12V, DailyIndicators, utc_day
from ingest.contract import Kind, topic_for, validate
from ota.engine import PERMANENT_REJECTIONS
from ota.manifest import generate_keypair, load_private_key, load_public_key, offer_manifest, sign
from ota.model import RANK, ActionState, Release
from ota.regression import VehicleHealth, compare
from simulators.fleet import Fleet
from simulators.ota_client import (
    ArtifactStore,
    CarState,
    ClientConfig,
    OtaClient,
    Report,
    cancel_manifest,
    simulated_artifact,
    simulated_release,
)
from simulators.physics.battery12v import BAD_RELEASE_DRAIN_V_PER_DAY, Battery12V
from vocab.eventtime import DAY_MS, HOUR_MS

VIN = "WCRAE1B50NA123456"
OTHER_VIN = "WCRBE2C70NA654321"
NOW = 1_767_600_000_000
TTL = 3_600_000
PRIVATE_PEM, PUBLIC_PEM = generate_keypair()
PRIVATE, PUBLIC = load_private_key(PRIVATE_PEM), load_public_key(PUBLIC_PEM)
RELEASE = simulated_release("2.0.0", "bms", "https://updates.example.com/bms-2.0.0.bin",
                            size=4_000_000)
PARKED = CarState(NOW, speed_kmh=0.0, system_state="OFF", v12_volts=12.6, soc_percent=70.0)
DRIVING = CarState(NOW, speed_kmh=42.0, system_state="ON", v12_volts=14.1, soc_percent=70.0)
KEY = "Vehicle.LowVoltageSystemState"
AMPS = "Vehicle.LowVoltageBattery.CurrentCurrent"
CONFIG = ClientConfig(bandwidth_bytes_per_s=1_000_000, install_ms=600_000, rollback_ms=300_000)


def offer(release: Release = RELEASE, *, vin: str = VIN, campaign: str = "c1", attempt: int = 1,
          issued_at: int = NOW, ttl: int = TTL) -> dict[str, Any]:
    return sign(PRIVATE, offer_manifest(release, vin=vin, campaign_id=campaign,
                                        attempt=attempt, issued_at=issued_at, ttl_ms=ttl))


def cancel(*, vin: str = VIN, campaign: str = "c1", attempt: int = 1, issued_at: int = NOW,
           ttl: int = TTL) -> dict[str, Any]:
    return sign(PRIVATE, cancel_manifest(vin=vin, campaign_id=campaign, attempt=attempt,
                                         issued_at=issued_at, ttl_ms=ttl))


def client(config: ClientConfig = CONFIG, **kwargs: Any) -> OtaClient:
    kwargs.setdefault("installed", {"bms": "1.0.0"})
    return OtaClient(VIN, PUBLIC, config=config, **kwargs)


def states(reports: list[Report]) -> list[tuple[int, str]]:
    return [(r.ts - NOW, r.status) for r in reports]


def assert_valid(reports: list[Report]) -> None:
    for r in reports:
        record = validate(topic_for(Kind.VEHICLE_OTA_STATUS, VIN), orjson.dumps(r.payload()))
        assert record["data"]["status"] == r.status
        assert record["ts"] == r.ts
        assert record["seq"] == r.seq


def test_accepted_offer_downloads_installs_and_succeeds_over_simulated_time() -> None:
    car = client()
    first = car.on_command(offer(), NOW, PARKED)
    assert states(first) == [(0, "accepted"), (0, "downloading")]
    assert car.advance(NOW + 3_999, PARKED) == []  # 4 MB at 1 MB/s: not yet
    later = car.advance(NOW + 4 * HOUR_MS, PARKED)
    # downloaded after size / bandwidth, installing at once (parked), succeeded 10 min later
    assert states(later) == [(4_000, "downloaded"), (4_000, "installing"),
                             (604_000, "succeeded")]
    reports = first + later
    assert [r.seq for r in reports] == [1, 2, 3, 4, 5]
    assert {(r.campaign_id, r.attempt, r.version) for r in reports} == {("c1", 1, "2.0.0")}
    assert reports[-1].payload()["action_id"] == "c1:1"  # what storage.ota.apply_reports reads
    assert car.installed == {"bms": "2.0.0"}
    assert car.job is None
    assert car.bad_since is None
    assert_valid(reports)


@pytest.mark.parametrize(("command", "installed", "now", "reason"), [
    (lambda: sign(load_private_key(generate_keypair()[0]), offer()["manifest"]), "1.0.0", NOW,
     "bad_signature"),
    (lambda: {**offer(), "manifest": {**offer()["manifest"], "attempt": 2}}, "1.0.0", NOW,
     "bad_signature"),
    (lambda: offer(vin=OTHER_VIN), "1.0.0", NOW, "wrong_vehicle"),
    (lambda: offer(), "1.0.0", NOW + TTL + 1, "expired"),
    (lambda: offer(), "2.0.0", NOW, "not_newer"),
    (lambda: offer(), "3.1.0", NOW, "not_newer"),
    (lambda: {"manifest": "junk"}, "1.0.0", NOW, "malformed"),
    (lambda: None, "1.0.0", NOW, "malformed"),
])
def test_security_refusals_are_reported_with_their_reason(
        command: Any, installed: str, now: int, reason: str) -> None:
    car = client(installed={"bms": installed})
    reports = car.on_command(command(), now, PARKED)
    assert [r.status for r in reports] == ["rejected"]
    detail = reports[0].detail or ""
    assert detail.split(":", 1)[0] == reason
    # a stale offer is worth retrying with a fresh one; the others are final at the cloud
    assert (reason in PERMANENT_REJECTIONS) == (reason != "expired")
    # Only an authentic manifest for this car may name the attempt it refuses: a forged or
    # another car's command must not be able to fail this car's genuine update.
    if reason in ("expired", "not_newer"):
        assert (reports[0].campaign_id, reports[0].attempt) == ("c1", 1)
    else:
        assert (reports[0].campaign_id, reports[0].attempt) == (None, None)
        assert "claimed campaign" in detail
    assert car.job is None
    assert car.installed == {"bms": installed}
    assert_valid(reports)


def test_a_signed_rollback_release_may_install_an_older_version() -> None:
    back = simulated_release("1.0.0", "bms", "https://updates.example.com/bms-1.0.0.bin",
                             rollback=True)
    car = client(installed={"bms": "2.0.0"})
    assert [r.status for r in car.on_command(offer(back), NOW, PARKED)] == [
        "accepted", "downloading"]
    car.advance(NOW + DAY_MS, PARKED)
    assert car.installed == {"bms": "1.0.0"}


@pytest.mark.parametrize(("state", "why"), [
    (DRIVING, "not_ready: driving (42.0 km/h)"),
    (CarState(NOW, 0.0, "ON", 13.9, 70.0), "not_ready: ignition ON"),
    (CarState(NOW, 0.0, "OFF", 11.8, 70.0), "not_ready: low_12v"),
    (CarState(NOW, 0.0, "OFF", 12.6, 9.0), "not_ready: low_soc"),
    (None, "not_ready: state unknown"),
])
def test_the_car_rechecks_its_own_state_and_refuses_when_not_ready(
        state: CarState | None, why: str) -> None:
    car = client()
    reports = car.on_command(offer(), NOW, state)
    assert [r.status for r in reports] == ["rejected"]
    assert (reports[0].detail or "").startswith(why)
    assert "not_ready" not in PERMANENT_REJECTIONS  # the cloud retries later
    assert car.job is None
    assert_valid(reports)


def test_a_tampered_artifact_fails_after_download_and_is_never_installed() -> None:
    cdn = ArtifactStore({RELEASE.sha256: b"X" + simulated_artifact(RELEASE.artifact_url,
                                                                     RELEASE.size)[1:]})
    car = client(artifacts=cdn)
    reports = car.on_command(offer(), NOW, PARKED) + car.advance(NOW + DAY_MS, PARKED)
    assert states(reports) == [(0, "accepted"), (0, "downloading"), (4_000, "failed")]
    assert (reports[-1].detail or "").startswith("bad_artifact: SHA-256 differs")
    assert car.installed == {"bms": "1.0.0"}


def test_a_release_whose_hash_the_cdn_cannot_match_fails_the_same_way() -> None:
    wrong = Release("2.0.0", "bms", "https://updates.example.com/x.bin", 100,
                    hashlib.sha256(b"something else").hexdigest())
    car = client()
    reports = car.on_command(offer(wrong), NOW, PARKED) + car.advance(NOW + DAY_MS, PARKED)
    assert reports[-1].status == "failed"
    assert (reports[-1].detail or "").startswith("bad_artifact: SHA-256 differs")


def test_a_car_that_drives_off_during_the_download_installs_once_parked_again() -> None:
    car = client()
    car.on_command(offer(), NOW, PARKED)
    assert states(car.advance(NOW + 10_000, DRIVING)) == [(4_000, "downloaded")]
    assert car.advance(NOW + HOUR_MS, DRIVING) == []  # rechecked every 5 min, still driving
    parked = CarState(NOW + HOUR_MS, 0.0, "OFF", 12.7, 65.0)
    got = car.advance(NOW + HOUR_MS + 300_000, parked)
    assert [r.status for r in got] == ["installing"]
    assert car.advance(NOW + 2 * HOUR_MS, parked)[-1].status == "succeeded"


def test_a_car_never_parked_gives_up_installing_with_a_transient_failure() -> None:
    car = client()
    car.on_command(offer(), NOW, PARKED)
    reports = car.advance(NOW + 2 * DAY_MS, DRIVING)
    assert [r.status for r in reports] == ["downloaded", "failed"]
    assert (reports[-1].detail or "").startswith("not_ready: no chance to install")


def test_cancel_before_installing_ends_the_attempt() -> None:
    car = client()
    car.on_command(offer(), NOW, PARKED)
    reports = car.on_command(cancel(), NOW + 1_000, PARKED)
    assert states(reports) == [(1_000, "canceled")]
    assert car.job is None
    assert car.advance(NOW + DAY_MS, PARKED) == []
    assert car.installed == {"bms": "1.0.0"}
    assert_valid(reports)


def test_cancel_while_installing_changes_nothing() -> None:
    car = client()
    car.on_command(offer(), NOW, PARKED)
    reports = car.on_command(cancel(), NOW + 5_000, PARKED)
    assert [r.status for r in reports] == ["downloaded", "installing"]  # due before it
    assert car.advance(NOW + DAY_MS, PARKED)[-1].status == "succeeded"


def test_forged_expired_or_foreign_cancels_are_refused_silently() -> None:
    car = client()
    car.on_command(offer(), NOW, PARKED)
    forged = sign(load_private_key(generate_keypair()[0]), cancel()["manifest"])
    assert car.on_command(forged, NOW + 10, PARKED) == []
    assert car.on_command(cancel(vin=OTHER_VIN), NOW + 10, PARKED) == []
    assert car.on_command(cancel(ttl=5), NOW + 10, PARKED) == []
    assert car.refused_cancels == ["bad_signature", "wrong_vehicle", "expired"]
    assert car.job is not None  # still downloading


def test_a_cancel_that_overtakes_its_offer_stops_it_from_starting() -> None:
    car = client()
    assert car.on_command(cancel(), NOW, PARKED) == []
    assert car.on_command(offer(), NOW + 1, PARKED) == []
    assert car.job is None


def test_redelivered_and_replayed_commands_change_nothing() -> None:
    car = client()
    command = offer()
    first = car.on_command(command, NOW, PARKED)
    assert car.on_command(copy.deepcopy(command), NOW + 100, PARKED) == []
    rest = car.advance(NOW + DAY_MS, PARKED)
    # replayed after success (and after expiry): still nothing, and no second install
    assert car.on_command(command, NOW + DAY_MS, PARKED) == []
    assert [r.status for r in first + rest] == ["accepted", "downloading", "downloaded",
                                                "installing", "succeeded"]
    # an older attempt arriving after a newer one is ignored too
    car2 = client()
    car2.on_command(offer(attempt=2), NOW, PARKED)
    assert car2.on_command(offer(attempt=1), NOW + 1, PARKED) == []
    assert car2.job is not None
    assert car2.job.attempt == 2


def test_a_newer_attempt_replaces_a_download_and_another_campaign_is_refused_as_busy() -> None:
    car = client()
    car.on_command(offer(), NOW, PARKED)
    again = car.on_command(offer(attempt=2), NOW + 1_000, PARKED)
    assert [(r.status, r.attempt) for r in again] == [("accepted", 2), ("downloading", 2)]
    other = simulated_release("5.0.0", "gateway", "https://updates.example.com/gw.bin")
    busy = car.on_command(offer(other, campaign="c2"), NOW + 2_000, PARKED)
    assert [r.status for r in busy] == ["rejected"]
    assert (busy[0].detail or "").startswith("busy:")
    assert "busy" not in PERMANENT_REJECTIONS


@pytest.mark.slow
def test_failures_and_rollbacks_follow_the_configured_rate_reproducibly() -> None:
    config = ClientConfig(failure_rate=0.3)

    def outcomes(seed: int) -> list[list[str]]:
        runs = []
        for i in range(400):
            car = OtaClient(f"WCRAE1B50NA{i:06d}", PUBLIC, {"bms": "1.0.0"}, config=config,
                            seed=seed)
            o = sign(PRIVATE, offer_manifest(RELEASE, vin=car.vin, campaign_id="c1",
                                             attempt=1, issued_at=NOW, ttl_ms=TTL))
            reports = car.on_command(o, NOW, PARKED) + car.advance(NOW + DAY_MS, PARKED)
            runs.append([r.status for r in reports][4:])
            if runs[-1] == ["failed", "rolled_back"]:
                assert car.installed == {"bms": "1.0.0"}
                assert (reports[-1].detail or "") == "rolled back to 1.0.0"
                assert reports[-1].ts - reports[-2].ts == config.rollback_ms
        return runs

    runs = outcomes(7)
    failed = sum(r == ["failed", "rolled_back"] for r in runs)
    assert sum(r == ["succeeded"] for r in runs) + failed == 400
    assert 0.22 < failed / 400 < 0.38  # 0.3 +- ~4 standard deviations
    assert outcomes(7) == runs  # seeded per car: the same run replays identically
    assert outcomes(8) != runs


def test_installing_a_bad_release_marks_the_car_and_a_fix_clears_it() -> None:
    car = client(ClientConfig(bad_releases=frozenset({"bms@2.0.0"})))
    car.on_command(offer(), NOW, PARKED)
    done = car.advance(NOW + DAY_MS, PARKED)[-1]
    assert done.status == "succeeded"
    assert car.bad_since == done.ts
    fix = simulated_release("2.0.1", "bms", "https://updates.example.com/bms-2.0.1.bin")
    accepted = car.on_command(offer(fix, campaign="c2", issued_at=NOW + DAY_MS), NOW + DAY_MS,
                              PARKED)
    assert accepted[0].status == "accepted"
    assert car.advance(NOW + 2 * DAY_MS, PARKED)[-1].status == "succeeded"
    assert car.installed == {"bms": "2.0.1"}
    assert car.bad_since is None


def test_a_bad_release_drains_the_parked_12v_battery_markedly_faster() -> None:
    def resting_after(days: float, bad_at: int | None) -> float:
        battery = Battery12V(12.7, drain_ts=NOW)
        battery.extra_drain_since = bad_at
        t = NOW
        while t < NOW + int(days * DAY_MS):
            t += 30 * 60_000
            battery.accrue_drain(t)
        return battery.resting_v(t)

    healthy = resting_after(1, None)
    bad = resting_after(1, NOW + 6 * HOUR_MS)
    assert healthy == pytest.approx(12.7 - 0.005, abs=1e-6)
    assert healthy - bad == pytest.approx(BAD_RELEASE_DRAIN_V_PER_DAY * 0.75, abs=1e-6)
    assert healthy - bad > 0.10  # what the regression stop needs to see within a day


def test_a_bad_release_shows_in_the_fleets_resting_voltage_and_parked_draw() -> None:
    """What the regression stop sees: half a fleet installs the bad release on day 1; the
    cloud's own daily indicators (``diagnostics.daily``, whole days after the install, as
    ``worker.ota_runner.cohort_health`` takes them) move clearly for those cars only - resting
    voltage down, 12 V draw while parked up - and ``ota.regression.compare`` finds both. The
    same fleet without the bad release gives no finding."""

    def indicators(bad: bool) -> tuple[Fleet, dict[str, float], dict[str, float],
                                       dict[str, float]]:
        fleet = Fleet(20, 0, seed=5)
        installed_at = fleet.start_ms + DAY_MS + 6 * HOUR_MS
        if bad:
            for spec in fleet.vehicles[:10]:
                fleet.bad_release_since[spec.vin] = installed_at
        daily = DailyIndicators()
        amps: dict[str, list[float]] = {}
        records = [validate(t, p) for _, t, p in fleet.messages(installed_at + 3 * DAY_MS)]
        daily.add(records)
        for r in records:
            signals = r["data"].get("signals", {})
            if r["ts"] >= installed_at and signals.get(KEY) == "OFF" and AMPS in signals:
                amps.setdefault(r["id"], []).append(signals[AMPS])
        means: dict[str, dict[str, list[float]]] = {RESTING_12V: {}, PARKED_DRAW_12V: {}}
        for _kind, vin, day, indicator, n, _lo, _hi, total, _last, _ts in daily.drain():
            if indicator in means and day > utc_day(installed_at) and n:
                means[indicator].setdefault(vin, []).append(total / n)
        return (fleet, {v: statistics.mean(x) for v, x in means[RESTING_12V].items()},
                {v: statistics.mean(x) for v, x in amps.items()},
                {v: statistics.mean(x) for v, x in means[PARKED_DRAW_12V].items()})

    fleet, healthy, healthy_amps, healthy_draw = indicators(False)
    _, after, after_amps, after_draw = indicators(True)
    bad_vins = [s.vin for s in fleet.vehicles[:10]]
    other_vins = [s.vin for s in fleet.vehicles[10:]]
    assert set(after) == set(healthy) == set(bad_vins + other_vins)
    assert all(after[v] == healthy[v] for v in other_vins)  # the rest of the fleet: as before
    assert all(after[v] < healthy[v] - 0.15 for v in bad_vins)
    assert all(after_amps[v] < healthy_amps[v] - 0.5 for v in bad_vins)  # awake while parked
    assert set(after_draw) == set(healthy_draw) == set(bad_vins + other_vins)
    assert all(after_draw[v] == healthy_draw[v] for v in other_vins)
    assert all(healthy_draw[v] < 2.0 for v in bad_vins + other_vins)  # ~50 mA asleep
    assert all(after_draw[v] > 20.0 for v in bad_vins)  # ~1.2 A: a module stays awake

    def health(resting: dict[str, float], draw: dict[str, float]) -> list[VehicleHealth]:
        return [VehicleHealth(v, v in bad_vins, 2.0, v12_rest_volts=resting[v],
                              parked_12v_ah_per_day=draw[v]) for v in bad_vins + other_vins]

    verdict = compare(health(after, after_draw))
    assert verdict.regressed
    assert [f["indicator"] for f in verdict.findings] == ["v12_rest_volts",
                                                          "parked_12v_ah_per_day"]
    assert not compare(health(healthy, healthy_draw)).regressed


def test_without_a_pinned_key_every_offer_is_refused() -> None:
    car = OtaClient(VIN, None, {"bms": "1.0.0"})
    reports = car.on_command(offer(), NOW, PARKED)
    assert [r.status for r in reports] == ["rejected"]
    assert (reports[0].detail or "").startswith("bad_signature")


# --------------------------------------------------------------------------------------------
# Property: whatever arrives, each attempt's reported states only move forward.

_REPORTED_RANK = {"rejected": RANK[ActionState.SUCCEEDED], "accepted": RANK[
    ActionState.DOWNLOADING], **{s.value: RANK[s] for s in ActionState}}

_ops = st.lists(st.one_of(
    st.tuples(st.just("offer"), st.integers(1, 3), st.sampled_from(["c1", "c2"]),
              st.sampled_from(["ok", "forged", "other_vin", "stale"])),
    st.tuples(st.just("cancel"), st.integers(1, 3), st.sampled_from(["c1", "c2"]),
              st.sampled_from(["ok", "forged"])),
    st.tuples(st.just("wait"), st.integers(0, 2 * HOUR_MS), st.sampled_from(
        ["parked", "driving", "unknown"]), st.just("")),
), max_size=25)


@settings(max_examples=150, deadline=None)
@given(_ops, st.floats(0, 1), st.integers(0, 5))
def test_reported_states_of_an_attempt_only_move_forward(
        ops: list[tuple[str, int, str, str]], failure_rate: float, seed: int) -> None:
    car = OtaClient(VIN, PUBLIC, {"bms": "1.0.0"}, seed=seed,
                    config=ClientConfig(failure_rate=failure_rate))
    now, state = NOW, PARKED
    reports: list[Report] = []
    releases = {"c1": RELEASE, "c2": simulated_release("3.0.0", "gateway",
                                                       "https://updates.example.com/g")}
    for kind, number, name, variant in ops:
        if kind == "wait":
            now += number
            state = {"parked": PARKED, "driving": DRIVING, "unknown": None}[name]  # type: ignore[assignment]
            reports += car.advance(now, state)
            continue
        if kind == "offer":
            cmd = offer(releases[name], campaign=name, attempt=number,
                        issued_at=now - (2 * TTL if variant == "stale" else 0),
                        vin=OTHER_VIN if variant == "other_vin" else VIN)
        else:
            cmd = cancel(campaign=name, attempt=number, issued_at=now)
        if variant == "forged":
            cmd = sign(load_private_key(generate_keypair()[0]), cmd["manifest"])
        reports += car.on_command(cmd, now, state)
    reports += car.advance(now + 10 * DAY_MS, PARKED)

    assert [r.ts for r in reports] == sorted(r.ts for r in reports)
    assert [r.seq for r in reports] == list(range(1, len(reports) + 1))
    by_attempt: dict[tuple[str | None, int | None], list[str]] = {}
    for r in reports:
        by_attempt.setdefault((r.campaign_id, r.attempt), []).append(r.status)
    for key, seen in by_attempt.items():
        ranks = [_REPORTED_RANK[s] for s in seen]
        assert ranks == sorted(ranks), (key, seen)
        terminal = [s for s in seen if _REPORTED_RANK[s] == RANK[ActionState.SUCCEEDED]]
        # at most one end, except a failed install followed by its rollback
        assert terminal in ([], ["rejected"], ["succeeded"], ["canceled"], ["failed"],
                            ["failed", "rolled_back"]) or key[1] is None, (key, seen)
    assert_valid(reports)

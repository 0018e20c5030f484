"""The remote command state machine, request policy and the car's checks (pure)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care import commands as c
from care.signing import generate_keypair, load_private_key, load_public_key, sign

VIN = "WCRAAAAAAAAAAAAA1"
PRIVATE_PEM, PUBLIC_PEM = generate_keypair()
PRIVATE, PUBLIC = load_private_key(PRIVATE_PEM), load_public_key(PUBLIC_PEM)

events = st.one_of(
    st.tuples(st.just("sent")),
    st.tuples(st.just("report"), st.sampled_from(c.REPORTED), st.integers(0, 200),
              st.sampled_from([None, c.REPLAYED, "bad_signature"])),
    st.tuples(st.just("tick"), st.integers(0, 200)),
)


def apply(state: str, event: tuple[object, ...], expires_at: int = 100) -> str:
    if event[0] == "sent":
        return c.on_sent(state)
    if event[0] == "report":
        return c.on_report(state, str(event[1]), int(event[2]), expires_at,  # type: ignore[call-overload]
                           event[3])  # type: ignore[arg-type]
    return c.on_expiry_check(state, int(event[1]), expires_at)  # type: ignore[call-overload]


@given(st.lists(events, max_size=30))
def test_every_run_stays_in_the_state_set_and_final_results_are_absorbing(
        run: list[tuple[object, ...]]) -> None:
    state = "requested"
    for event in run:
        new = apply(state, event)
        assert new in c.STATES
        if state in ("succeeded", "failed", "refused"):
            assert new == state  # a car's final answer is the last word
        if state == "expired":
            assert new in ("expired", "succeeded", "failed", "refused")
        state = new


@given(st.sampled_from(c.STATES), events)
def test_every_event_is_idempotent(state: str, event: tuple[object, ...]) -> None:
    once = apply(state, event)
    assert apply(once, event) == once


@given(st.integers(0, 200), st.sampled_from(("succeeded", "failed", "refused")))
def test_a_result_produced_in_time_beats_an_expiry_declared_before_it_arrived(
        ts: int, reported: str) -> None:
    expired = c.on_expiry_check("sent", 101, 100)
    assert expired == "expired"
    assert c.on_report(expired, reported, ts, 100) == (reported if ts <= 100 else "expired")
    assert c.on_report(expired, "acknowledged", ts, 100) == "expired"


@given(st.sampled_from(c.STATES), st.integers(0, 200))
def test_a_replayed_refusal_never_changes_a_command(state: str, ts: int) -> None:
    # The car had the command already: its answer to the first copy counts.
    assert c.on_report(state, "refused", ts, 100, c.REPLAYED) == state


def test_the_main_path() -> None:
    state = c.on_sent("requested")
    assert state == "sent"
    state = c.on_report(state, "acknowledged", 10, 100)
    assert state == "acknowledged"
    assert c.on_report(state, "failed", 20, 100) == "failed"
    assert c.on_expiry_check("acknowledged", 100, 100) == "acknowledged"  # at expiry: still on
    assert c.on_expiry_check("acknowledged", 101, 100) == "expired"


def test_unknown_states_and_reports_are_refused() -> None:
    with pytest.raises(ValueError, match="not a command state"):
        c.on_sent("lost")
    with pytest.raises(c.IllegalCommandStep, match="not a reportable state"):
        c.on_report("sent", "requested", 1, 2)


@given(st.lists(st.integers(0, 10_000), max_size=40), st.integers(0, 10_000),
       st.integers(1, 10))
def test_the_rate_limit_counts_the_window(recent: list[int], now: int, limit: int) -> None:
    recent = [t for t in recent if t <= now]  # requests made so far
    wait = c.over_limit(recent, now, limit, window_ms=1000)
    inside = [t for t in recent if now - 1000 < t <= now]
    assert (wait is None) == (len(inside) < limit)
    if wait is not None:
        assert 0 < wait <= 1000
        # After the wait, one more request fits.
        assert c.over_limit(recent, now + wait, limit, window_ms=1000) is None


def test_clear_dtc_needs_an_admin_and_unknown_kinds_are_refused() -> None:
    assert c.required_permission("battery_test") == "cases"
    assert c.required_permission("clear_dtc") == "admin"
    with pytest.raises(ValueError, match="not a command kind"):
        c.required_permission("unlock_doors")


# ---------------------------------------------------------------------------- the car's checks


def envelope(**over: object) -> dict[str, object]:
    body = c.command_body(command_id="cmd-1", vin=VIN, kind="battery_test", nonce="n-1",
                          issued_at=1000, expires_at=2000)
    body.update(over)
    return sign(PRIVATE, body, c.ENVELOPE_FIELD)


def test_a_valid_command_is_accepted() -> None:
    got = c.verify_command(PUBLIC, envelope(), vin=VIN, now=1500, seen_nonces=set())
    assert (got.id, got.kind, got.nonce, got.expires_at) == ("cmd-1", "battery_test", "n-1", 2000)


@pytest.mark.parametrize(("mutate", "now", "seen", "reason"), [
    (lambda e: e["command"].update(kind="clear_dtc"), 1500, set(), "bad_signature"),
    (lambda e: e.update(signature="AAAA"), 1500, set(), "bad_signature"),
    (lambda e: None, 2001, set(), "expired"),
    (lambda e: None, 1500, {"n-1"}, "replayed"),
    (lambda e: e.pop("signature"), 1500, set(), "malformed"),
])
def test_tampered_expired_and_replayed_commands_are_refused(mutate, now, seen, reason) -> None:  # type: ignore[no-untyped-def]
    env = copy.deepcopy(envelope())
    mutate(env)
    with pytest.raises(c.CommandRefused) as info:
        c.verify_command(PUBLIC, env, vin=VIN, now=now, seen_nonces=seen)
    assert info.value.reason == reason


def test_a_command_for_another_car_is_refused() -> None:
    with pytest.raises(c.CommandRefused) as info:
        c.verify_command(PUBLIC, envelope(), vin="WCRAAAAAAAAAAAAA2", now=1500,
                         seen_nonces=set())
    assert info.value.reason == "wrong_vehicle"


def test_another_key_is_refused() -> None:
    other = load_public_key(generate_keypair()[1])
    with pytest.raises(c.CommandRefused) as info:
        c.verify_command(other, envelope(), vin=VIN, now=1500, seen_nonces=set())
    assert info.value.reason == "bad_signature"


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=10))
def test_anything_unsigned_is_refused_never_crashes(junk: object) -> None:
    with pytest.raises(c.CommandRefused):
        c.verify_command(PUBLIC, junk, vin=VIN, now=1500, seen_nonces=set())


def test_battery_verdicts() -> None:
    assert c.battery_verdict({"passed": False, "resting_voltage": 12.6}) == "confirmed"
    assert c.battery_verdict({"passed": True, "resting_voltage": 12.6}) == "false_positive"
    assert c.battery_verdict({"passed": True, "resting_voltage": 12.1}) is None  # discharged

"""Remote support commands: kinds, the command state machine, request policy, and what a car
checks before it obeys one. Pure: no I/O, no clock (callers pass "now").

States::

    requested -> sent -> acknowledged -> succeeded | failed
         \\         \\          \\-> refused | expired
          \\         \\-> succeeded | failed | refused | expired   (the car's ack may be lost)
           \\-> expired | refused

``succeeded``, ``failed`` and ``refused`` are final. ``expired`` is final too, except that a
result the car produced before the expiry (its event time at or before ``expires_at``) still
wins: the cloud declares expiry on the fleet's clock, and a result already on its way through
the broker, the bridge and Kafka may arrive after that declaration. Every event is
idempotent: applying the same one twice is applying it once.

A refusal as ``replayed`` changes nothing: it means the car already has the command (MQTT
delivers at least once, and the worker resends a command whose hand-over it could not confirm),
and its answer to the first copy is the one that counts.

Expiry, nonces and rate limits use the times given to them: event time (the fleet's clock,
from the messages) for expiry, the API's request times for rate limits (how fast staff ask is
operational, not a fact about the cars).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from care.signing import SignatureRejected, open_envelope
from vocab.eventtime import HOUR_MS

CommandKind = Literal["snapshot", "battery_test", "wake", "clear_dtc"]
CommandState = Literal["requested", "sent", "acknowledged", "succeeded", "failed", "refused",
                       "expired"]

KINDS: Final[tuple[CommandKind, ...]] = ("snapshot", "battery_test", "wake", "clear_dtc")
STATES: Final[tuple[CommandState, ...]] = (
    "requested", "sent", "acknowledged", "succeeded", "failed", "refused", "expired")
IN_FLIGHT: Final[frozenset[str]] = frozenset({"requested", "sent", "acknowledged"})
FINAL: Final[frozenset[str]] = frozenset({"succeeded", "failed", "refused", "expired"})
# What a car may report on vehicles/{vin}/commands/result.
REPORTED: Final[tuple[str, ...]] = ("acknowledged", "succeeded", "failed", "refused")
# Kinds that change the car, not just read it: admin only, and every request is audited.
ADMIN_ONLY: Final[frozenset[str]] = frozenset({"clear_dtc"})

ENVELOPE_FIELD: Final = "command"
REPLAYED: Final = "replayed"  # the car's refusal of a nonce it has seen
COMMAND_TYPE: Final = "remote.command"
DEFAULT_TTL_MS: Final = 6 * HOUR_MS  # of event time: an answer later than this is stale

# Rate limits, per rolling window of request time: a car is not a thing to poke at, and a
# leaked or scripted key should not be able to keep a fleet awake.
RATE_WINDOW_MS: Final = HOUR_MS
PER_VEHICLE_PER_WINDOW: Final = 10
PER_KEY_PER_WINDOW: Final = 60

# The 12 V load test: the car draws LOAD_A for LOAD_MS and reports the lowest voltage under
# it; a battery holding at least PASS_V under load can crank (wake the contactors) with the
# difference as its margin. RESTING_HEALTHY_V is the resting voltage at which a passed test
# refutes a weak-battery alert (below it the battery is discharged, if not worn).
LOAD_A: Final = 100.0
LOAD_MS: Final = 10_000
PASS_V: Final = 9.6
RESTING_HEALTHY_V: Final = 12.4


class IllegalCommandStep(ValueError):
    """An event that cannot apply to a command in its current state."""


def _check(state: str) -> None:
    if state not in STATES:
        raise ValueError(f"{state!r} is not a command state ({', '.join(STATES)})")


def on_sent(state: str) -> CommandState:
    """The worker signed and sent it."""
    _check(state)
    if state == "requested":
        return "sent"
    if state in ("sent", "acknowledged") or state in FINAL:
        return state  # type: ignore[return-value]  # a repeat (or late): no change
    raise IllegalCommandStep(f"cannot send a command in state {state!r}")


def on_report(state: str, reported: str, report_ts: int, expires_at: int,
              reason: str | None = None) -> CommandState:
    """The car's report ``reported`` (one of REPORTED, with its ``reason``), produced at
    event time ``report_ts``, arrives for a command in ``state``. Unknown reports are
    IllegalCommandStep; a report that changes nothing (a repeat, or one after a final state)
    returns ``state``."""
    _check(state)
    if reported not in REPORTED:
        raise IllegalCommandStep(f"{reported!r} is not a reportable state "
                                 f"({', '.join(REPORTED)})")
    if reported == "refused" and reason == REPLAYED:
        # The car has this command already (a redelivery, or a resend after a crash): its
        # answer to the first copy is the one that counts.
        return state  # type: ignore[return-value]
    if state == "expired":
        # A result produced in time beats an expiry declared before it arrived.
        if reported != "acknowledged" and report_ts <= expires_at:
            return reported  # type: ignore[return-value]
        return "expired"
    if state in FINAL:
        return state  # type: ignore[return-value]
    if reported == "acknowledged":
        return "acknowledged"
    return reported  # type: ignore[return-value]


def on_expiry_check(state: str, now: int, expires_at: int) -> CommandState:
    """The fleet's event time is ``now``: an in-flight command past its expiry expires."""
    _check(state)
    if state in IN_FLIGHT and now > expires_at:
        return "expired"
    return state  # type: ignore[return-value]


def required_permission(kind: str) -> str:
    """The API permission a request for ``kind`` needs (``cases`` = agent or above)."""
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a command kind ({', '.join(KINDS)})")
    return "admin" if kind in ADMIN_ONLY else "cases"


def over_limit(recent: Iterable[int], now: int, limit: int, window_ms: int = RATE_WINDOW_MS
               ) -> int | None:
    """None when one more request at ``now`` stays within ``limit`` per ``window_ms`` given
    the ``recent`` request times; otherwise the milliseconds until it would."""
    inside = sorted(t for t in recent if now - window_ms < t <= now)
    if len(inside) < limit:
        return None
    # The oldest request that must leave the window before one more fits.
    return inside[len(inside) - limit] + window_ms - now


# ---------------------------------------------------------------------------- the message


def command_body(*, command_id: str, vin: str, kind: str, nonce: str, issued_at: int,
                 expires_at: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the cloud signs for a car."""
    return {"type": COMMAND_TYPE, "id": command_id, "vin": vin, "kind": kind, "nonce": nonce,
            "issued_at": issued_at, "expires_at": expires_at, "params": params or {}}


class CommandRefused(ValueError):
    """Why a car refuses a command; ``reason`` is a stable code, sent back as is."""

    def __init__(self, reason: str, detail: str, command_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.command_id = command_id  # only when the command was authentic


@dataclass(frozen=True, slots=True)
class VerifiedCommand:
    id: str
    kind: str
    nonce: str
    issued_at: int
    expires_at: int
    params: dict[str, Any]


def verify_command(public_key: Ed25519PublicKey, envelope: Any, *, vin: str, now: int,
                   seen_nonces: Collection[str]) -> VerifiedCommand:
    """What a car checks on receiving a command: the signature over the whole command, that
    it is for this car, not expired at the car's event time ``now``, and that its nonce was
    never used before (a replay). Raises CommandRefused."""
    try:
        body = open_envelope(public_key, envelope, ENVELOPE_FIELD)
    except SignatureRejected as exc:
        raise CommandRefused(exc.reason, str(exc).partition(": ")[2]) from None
    command_id = body.get("id")
    if body.get("type") != COMMAND_TYPE or not isinstance(command_id, str):
        raise CommandRefused("malformed", "not a remote command")
    if body.get("vin") != vin:
        raise CommandRefused("wrong_vehicle", f"the command is for {body.get('vin')!r}",
                             command_id)
    kind, nonce = body.get("kind"), body.get("nonce")
    issued_at, expires_at = body.get("issued_at"), body.get("expires_at")
    params = body.get("params", {})
    if kind not in KINDS or not isinstance(nonce, str) or not nonce \
            or not isinstance(issued_at, int) or not isinstance(expires_at, int) \
            or not isinstance(params, dict):
        raise CommandRefused("malformed", "kind, nonce, issued_at, expires_at or params "
                             "missing or of the wrong type", command_id)
    if now > expires_at:
        raise CommandRefused("expired", f"the command expired at {expires_at}; now {now}",
                             command_id)
    if nonce in seen_nonces:
        raise CommandRefused(REPLAYED, f"nonce {nonce!r} was already used", command_id)
    return VerifiedCommand(command_id, str(kind), nonce, issued_at, expires_at, params)


# ---------------------------------------------------------------------------- verdicts


def battery_verdict(result: dict[str, Any]) -> Literal["confirmed", "false_positive"] | None:
    """What a battery test says about a ``weak_12v_battery`` alert: a failed test confirms
    it; a passed one with a healthy resting voltage refutes it; a pass on a discharged
    battery says nothing either way (None)."""
    passed = result.get("passed")
    if passed is False:
        return "confirmed"
    resting = result.get("resting_voltage")
    if passed is True and isinstance(resting, int | float) and resting >= RESTING_HEALTHY_V:
        return "false_positive"
    return None


# What a command's result can say about an alert, by (command kind, alert type).
VERDICTS: Final = {("battery_test", "weak_12v_battery"): battery_verdict}

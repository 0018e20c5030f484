"""The care-case workflow: states, legal transitions, SLA due times, outcome labels.

Pure (no I/O, no clock): the store and the routes call it, property tests exercise it.

Main path: ``new -> acknowledged -> owner_contacted -> service_booked -> resolved``. Any open
state may end as ``false_positive`` (the alert was wrong) or ``no_action_needed`` (it may be
right, but nobody needs to act). Terminal states are final: a problem that comes back raises
a new alert, which opens a new case.

Shortcuts that real care work needs (and why):

* ``acknowledged -> service_booked``: chargers and fleet-operated vehicles have no owner to
  call; the operator books the technician directly.
* ``owner_contacted -> resolved``: the call fixed it (the owner inflates the tyre, drives
  longer to recharge the 12 V battery); no workshop visit is needed.
* ``service_booked -> owner_contacted``: the booking fell through (cancelled, no-show) and
  staff are back to talking with the owner. The only backwards step; it never leaves a
  terminal state.

There is no ``new -> owner_contacted``: acknowledging first is what tells colleagues that
someone has picked the case up, so two agents do not call the same owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from vocab.eventtime import HOUR_MS
from vocab.severity import SEVERITIES

CaseState = Literal["new", "acknowledged", "owner_contacted", "service_booked", "resolved",
                    "false_positive", "no_action_needed"]
Outcome = Literal["confirmed", "false_positive"]

STATES: Final[tuple[CaseState, ...]] = (
    "new", "acknowledged", "owner_contacted", "service_booked", "resolved", "false_positive",
    "no_action_needed")
TERMINAL: Final[frozenset[str]] = frozenset({"resolved", "false_positive", "no_action_needed"})
OPEN_STATES: Final[tuple[CaseState, ...]] = tuple(s for s in STATES if s not in TERMINAL)
MAIN_PATH: Final[tuple[CaseState, ...]] = (
    "new", "acknowledged", "owner_contacted", "service_booked", "resolved")
OUTCOMES: Final[tuple[Outcome, ...]] = ("confirmed", "false_positive")

_ENDINGS: Final[tuple[CaseState, ...]] = ("false_positive", "no_action_needed")
# Forward moves of each open state; every open state may also end in _ENDINGS.
_MOVES: Final[dict[str, tuple[CaseState, ...]]] = {
    "new": ("acknowledged",),
    "acknowledged": ("owner_contacted", "service_booked"),
    "owner_contacted": ("service_booked", "resolved"),
    "service_booked": ("owner_contacted", "resolved"),
}

_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SEVERITIES)}
DEFAULT_SLA_HOURS: Final[dict[str, float]] = {"critical": 4.0, "warning": 24.0, "info": 72.0}
DEFAULT_SLA_TEXT: Final[str] = "critical=4,warning=24,info=72"
_MAX_SLA_HOURS: Final[float] = 24.0 * 366  # a year: anything longer is a typo, not an SLA


class IllegalTransition(Exception):
    """``state -> to`` is not a legal move; ``allowed`` are the moves that are."""

    def __init__(self, state: str, to: str, allowed: tuple[CaseState, ...]) -> None:
        self.state, self.to, self.allowed = state, to, allowed
        moves = ", ".join(allowed) if allowed else f"none: {state} is final"
        super().__init__(f"a case in state {state!r} cannot move to {to!r} (allowed: {moves})")


def _check_state(state: str) -> None:
    if state not in STATES:
        raise ValueError(f"{state!r} is not a case state ({', '.join(STATES)})")


def is_terminal(state: str) -> bool:
    _check_state(state)
    return state in TERMINAL


def allowed(state: str) -> tuple[CaseState, ...]:
    """The states a case in ``state`` may move to, in workflow order (empty when final)."""
    _check_state(state)
    if state in TERMINAL:
        return ()
    targets = set(_MOVES[state]) | set(_ENDINGS)
    return tuple(s for s in STATES if s in targets)


def transition(state: str, to: str) -> CaseState:
    """The new state, or IllegalTransition carrying ``allowed(state)``."""
    moves = allowed(state)
    for move in moves:
        if move == to:
            return move
    raise IllegalTransition(state, to, moves)


def default_outcome(state: str) -> Outcome | None:
    """The label a case's alerts get when it ends in ``state``.

    ``resolved`` confirms them and ``false_positive`` refutes them. ``no_action_needed``
    labels nothing: it says the problem was not worth acting on (owner already aware, car
    being sold or scrapped, handled by a dealer), not whether the detector was right, and
    counting it either way would bend the precision that ``GET /quality`` reports. Staff who
    know better label alerts one by one (the transition's ``outcomes`` map).
    """
    _check_state(state)
    if state == "resolved":
        return "confirmed"
    if state == "false_positive":
        return "false_positive"
    return None


# ---------------------------------------------------------------------------- severity, SLA


def severity_rank(severity: str) -> int:
    try:
        return _RANK[severity]
    except KeyError:
        raise ValueError(f"{severity!r} is not a severity ({', '.join(SEVERITIES)})") from None


def escalated(current: str, incoming: str) -> str:
    """The case severity after an alert of ``incoming`` severity joins or changes.

    Only ever up: a case keeps the worst severity any of its alerts reached. A detector that
    de-escalates has not made the problem smaller, and relaxing a due time staff were already
    working to would move cases out of the overdue list behind their backs.
    """
    return incoming if severity_rank(incoming) > severity_rank(current) else current


def due_at(opened_at_ms: int, severity: str, sla_hours: Mapping[str, float]) -> int:
    """When a case of ``severity`` opened at ``opened_at_ms`` (event time) is due."""
    severity_rank(severity)
    return opened_at_ms + round(sla_hours[severity] * HOUR_MS)


def parse_sla_hours(text: str, name: str = "OWNERCARE_CASE_SLA_HOURS") -> dict[str, float]:
    """``"critical=4,warning=24,info=72"`` -> hours per severity; ValueError says what is wrong.

    Every severity must be given exactly once, with a positive number of hours (fractions
    allowed, e.g. ``critical=0.5``) of at most a year. A more severe case may not get a longer
    SLA than a less severe one: that is always a typo.
    """
    hours: dict[str, float] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise ValueError(f"{name} has an empty entry; expected e.g. {DEFAULT_SLA_TEXT!r}")
        severity, sep, value = (p.strip() for p in part.partition("="))
        if not sep:
            raise ValueError(f"{name} entry {part!r} is not severity=hours")
        if severity not in _RANK:
            raise ValueError(f"{name} entry {part!r}: {severity!r} is not a severity "
                             f"({', '.join(SEVERITIES)})")
        if severity in hours:
            raise ValueError(f"{name} gives {severity!r} more than once")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name} entry {part!r}: {value!r} is not a number of hours") \
                from None
        if not 0 < number <= _MAX_SLA_HOURS:  # also refuses nan and inf
            raise ValueError(f"{name} entry {part!r}: hours must be > 0 and at most "
                             f"{_MAX_SLA_HOURS:g}")
        hours[severity] = number
    missing = [s for s in SEVERITIES if s not in hours]
    if missing:
        raise ValueError(f"{name} is missing {', '.join(missing)}; expected e.g. "
                         f"{DEFAULT_SLA_TEXT!r}")
    for lower, higher in zip(SEVERITIES, SEVERITIES[1:], strict=False):
        if hours[higher] > hours[lower]:
            raise ValueError(f"{name}: {higher}={hours[higher]:g} h is longer than "
                             f"{lower}={hours[lower]:g} h; a more severe case must not wait "
                             "longer")
    return {s: hours[s] for s in SEVERITIES}

"""The pure case workflow: transitions (property tests), SLA due times, the SLA setting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from care import casework
from care.casework import (
    MAIN_PATH,
    OPEN_STATES,
    STATES,
    TERMINAL,
    IllegalTransition,
    allowed,
    default_outcome,
    due_at,
    escalated,
    parse_sla_hours,
    transition,
)
from config.settings import ApiSettings, WorkerSettings

HOUR = 3_600_000


def test_the_workflow_table() -> None:
    assert allowed("new") == ("acknowledged", "false_positive", "no_action_needed")
    assert allowed("acknowledged") == ("owner_contacted", "service_booked", "false_positive",
                                       "no_action_needed")
    assert allowed("owner_contacted") == ("service_booked", "resolved", "false_positive",
                                          "no_action_needed")
    assert allowed("service_booked") == ("owner_contacted", "resolved", "false_positive",
                                         "no_action_needed")
    for state in TERMINAL:
        assert allowed(state) == ()
    assert set(OPEN_STATES) | TERMINAL == set(STATES)


def test_every_open_state_may_end_as_false_positive_or_no_action() -> None:
    for state in OPEN_STATES:
        assert transition(state, "false_positive") == "false_positive"
        assert transition(state, "no_action_needed") == "no_action_needed"


def test_an_illegal_move_names_the_legal_ones() -> None:
    with pytest.raises(IllegalTransition) as caught:
        transition("new", "resolved")
    assert caught.value.state == "new"
    assert caught.value.to == "resolved"
    assert caught.value.allowed == allowed("new")
    assert "'new' cannot move to 'resolved'" in str(caught.value)
    with pytest.raises(IllegalTransition, match="none: resolved is final"):
        transition("resolved", "new")
    with pytest.raises(IllegalTransition):
        transition("new", "new")  # staying put is not a move
    with pytest.raises(IllegalTransition) as unknown:
        transition("new", "closed")  # not a state at all: still the legal ones
    assert unknown.value.allowed == allowed("new")


def test_unknown_current_state_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'closed' is not a case state"):
        allowed("closed")


def test_outcome_labels() -> None:
    assert default_outcome("resolved") == "confirmed"
    assert default_outcome("false_positive") == "false_positive"
    assert default_outcome("no_action_needed") is None
    assert all(default_outcome(s) is None for s in OPEN_STATES)


# ---------------------------------------------------------------------------- properties

targets = st.sampled_from(STATES + ("closed", ""))


@given(st.lists(targets, max_size=40))
def test_random_walks_never_leave_a_terminal_state(moves: list[str]) -> None:
    state = "new"
    for to in moves:
        before = state
        try:
            state = transition(state, to)
        except IllegalTransition as exc:
            # Every refusal reports exactly the legal moves, and the case stays where it was.
            assert exc.allowed == allowed(before)
            assert to not in exc.allowed
            continue
        assert state == to
        assert to in allowed(before)
        assert before not in TERMINAL, "a terminal state moved"


@given(st.sampled_from(STATES), targets)
def test_transition_accepts_exactly_the_allowed_moves(state: str, to: str) -> None:
    if to in allowed(state):
        assert transition(state, to) == to
    else:
        with pytest.raises(IllegalTransition) as caught:
            transition(state, to)
        assert caught.value.allowed == allowed(state)


def test_the_main_path_is_reachable_and_every_state_reachable_from_new() -> None:
    state = MAIN_PATH[0]
    for nxt in MAIN_PATH[1:]:
        state = transition(state, nxt)
    assert state == "resolved"
    seen, frontier = {"new"}, ["new"]
    while frontier:
        for nxt in allowed(frontier.pop()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(STATES)


@given(st.lists(st.sampled_from(casework.SEVERITIES), min_size=1, max_size=10))
def test_case_severity_is_the_worst_seen(severities: list[str]) -> None:
    severity = severities[0]
    for incoming in severities[1:]:
        severity = escalated(severity, incoming)
    assert severity == max(severities, key=casework.severity_rank)


# ---------------------------------------------------------------------------- SLA


def test_due_time_by_severity() -> None:
    sla = parse_sla_hours("critical=0.5,warning=24,info=72")
    assert due_at(1000, "critical", sla) == 1000 + HOUR // 2
    assert due_at(1000, "warning", sla) == 1000 + 24 * HOUR
    assert due_at(1000, "info", sla) == 1000 + 72 * HOUR
    assert parse_sla_hours(casework.DEFAULT_SLA_TEXT) == casework.DEFAULT_SLA_HOURS


def test_sla_text_accepts_any_order_and_spaces() -> None:
    assert parse_sla_hours(" info = 48 , critical=2,warning=8") == {
        "info": 48.0, "warning": 8.0, "critical": 2.0}


@pytest.mark.parametrize(("text", "message"), [
    ("critical=4,warning=24", "is missing info"),
    ("critical=4,warning=24,info=72,critical=3", "gives 'critical' more than once"),
    ("critical=4,warning=24,info", "entry 'info' is not severity=hours"),
    ("critical=4,warning=24,urgent=1", "'urgent' is not a severity"),
    ("critical=4,warning=soon,info=72", "'soon' is not a number of hours"),
    ("critical=0,warning=24,info=72", "hours must be > 0"),
    ("critical=nan,warning=24,info=72", "hours must be > 0"),
    ("critical=4,warning=24,info=1e9", "at most 8784"),
    ("critical=4,,warning=24,info=72", "has an empty entry"),
    ("critical=48,warning=24,info=72", "critical=48 h is longer than warning=24 h"),
])
def test_bad_sla_text_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sla_hours(text)


def test_sla_setting_is_validated_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNERCARE_CASE_SLA_HOURS", "critical=1,warning=2,info=3")
    assert ApiSettings().case_sla == {"info": 3.0, "warning": 2.0, "critical": 1.0}
    assert WorkerSettings().case_sla == ApiSettings().case_sla
    monkeypatch.setenv("OWNERCARE_CASE_SLA_HOURS", "critical=1,warning=2")
    with pytest.raises(ValidationError, match="OWNERCARE_CASE_SLA_HOURS is missing info"):
        WorkerSettings()

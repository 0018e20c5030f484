"""Console sessions: ids are fresh and unguessable, and they end when idle or old."""

from __future__ import annotations

from api.console.session import IDLE_S, MAX_AGE_S, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_after_its_idle_time_and_its_maximum_age() -> None:
    clock = Clock()
    sessions = SessionStore(clock)
    sid, session = sessions.open("key1")
    other, _ = sessions.open("key1")
    assert sid != other
    assert len(sid) >= 40
    assert session.csrf not in (sid, other)
    step = IDLE_S * 0.7  # two steps pass the idle time, and stay within the maximum age
    assert 2 * step < MAX_AGE_S
    clock.now += step
    assert sessions.get(sid) is session  # used: the idle time starts again
    clock.now += step
    assert sessions.get(sid) is session
    assert sessions.get(other) is None  # idle too long
    clock.now = 1000.0 + MAX_AGE_S + 1
    assert sessions.get(sid) is None  # however busy, not past the maximum age
    assert sessions.get("made-up") is None


def test_closing_a_session_forgets_it() -> None:
    sessions = SessionStore(Clock())
    sid, _ = sessions.open("key1")
    sessions.close(sid)
    sessions.close(sid)  # twice is harmless
    assert sessions.get(sid) is None

"""Survey tokens and answers (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care import survey as s

SECRET = b"k" * 32


@given(st.text(min_size=1, max_size=36), st.integers(1, 2**31 - 1),
       st.integers(0, 2**50), st.integers(0, 2**50))
def test_a_token_reads_back_until_it_expires(survey_id: str, case_id: int, expires: int,
                                             now: int) -> None:
    claim = s.SurveyClaim(survey_id, case_id, expires)
    token = s.make_token(SECRET, claim)
    if now > expires:
        with pytest.raises(s.TokenRejected) as info:
            s.read_token(SECRET, token, now)
        assert info.value.reason == "expired"
    else:
        assert s.read_token(SECRET, token, now) == claim


@given(st.integers(0, 200), st.characters(codec="ascii"))
def test_any_changed_character_makes_a_forgery(position: int, char: str) -> None:
    token = s.make_token(SECRET, s.SurveyClaim("sv-1", 7, 10_000))
    i = position % len(token)
    if token[i] == char:
        return
    changed = token[:i] + char + token[i + 1:]
    with pytest.raises(s.TokenRejected) as info:
        s.read_token(SECRET, changed, 0)
    # base64url's last character may carry padding bits only: the same bytes, so the same MAC
    assert info.value.reason == "forged"


def test_another_secret_is_a_forgery() -> None:
    token = s.make_token(SECRET, s.SurveyClaim("sv-1", 7, 10_000))
    with pytest.raises(s.TokenRejected, match="forged"):
        s.read_token(b"x" * 32, token, 0)


@given(st.text(max_size=600))
def test_junk_is_refused_never_crashes(junk: str) -> None:
    with pytest.raises(s.TokenRejected):
        s.read_token(SECRET, junk, 0)


@pytest.mark.parametrize(("score", "comment", "expected"), [
    ("5", " great ", (5, "great")), (1, None, (1, "")), ("3", "", (3, ""))])
def test_valid_answers(score: object, comment: object, expected: tuple[int, str]) -> None:
    assert s.check_answer(score, comment) == expected


@pytest.mark.parametrize(("score", "comment"), [
    ("0", ""), ("6", ""), ("", ""), ("2.5", ""), (True, ""), ("3", "x" * 2001), ("3", "a\x00")])
def test_invalid_answers(score: object, comment: object) -> None:
    with pytest.raises(ValueError, match="rating|comment"):
        s.check_answer(score, comment)


def test_low_scores_need_a_follow_up() -> None:
    assert [n for n in range(1, 6) if s.needs_follow_up(n)] == [1, 2]

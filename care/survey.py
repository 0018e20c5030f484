"""The owner's satisfaction survey: one-time signed links, and what an answer may be.

A link carries a token ``<payload>.<mac>``: the payload is base64url of canonical JSON
``{"s": survey id, "c": case id, "x": expiry (wall ms)}``, the MAC is HMAC-SHA256 over the
payload's text with the server's survey secret, base64url. Nothing but the token identifies
the owner: whoever holds the link may answer, once, until it expires. "Once" is the store's
business (the survey row); forging a token needs the secret. Pure: callers pass "now".

Surveys go to people, not cars, so their times are wall clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

import orjson

from vocab.eventtime import DAY_MS

SURVEY_TTL_MS: Final = 14 * DAY_MS
MIN_SCORE: Final = 1
MAX_SCORE: Final = 5
LOW_SCORE: Final = 2  # this or lower opens a follow-up task for a supervisor
MAX_COMMENT: Final = 2000
MAX_TOKEN_LEN: Final = 512


class TokenRejected(ValueError):
    """Why a survey link does not open: ``reason`` is ``forged`` or ``expired``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SurveyClaim:
    survey_id: str
    case_id: int
    expires_wall_ms: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def make_token(secret: bytes, claim: SurveyClaim) -> str:
    payload = _b64(orjson.dumps({"s": claim.survey_id, "c": claim.case_id,
                                 "x": claim.expires_wall_ms}, option=orjson.OPT_SORT_KEYS))
    return f"{payload}.{_mac(secret, payload)}"


def read_token(secret: bytes, token: str, now_wall_ms: int) -> SurveyClaim:
    """The claim of an authentic, unexpired token; TokenRejected otherwise. The MAC is
    checked before anything in the payload is believed."""
    if len(token) > MAX_TOKEN_LEN or token.count(".") != 1:
        raise TokenRejected("forged", "not a survey token")
    payload, mac = token.split(".")
    if not hmac.compare_digest(_mac(secret, payload).encode(), mac.encode()):
        raise TokenRejected("forged", "the token's signature does not match")
    try:
        body = orjson.loads(_unb64(payload))
    except (ValueError, binascii.Error):  # signed by us, so never; but never trust a parse
        raise TokenRejected("forged", "the token's payload is not readable") from None
    survey_id, case_id, expires = (body.get(k) for k in ("s", "c", "x")) \
        if isinstance(body, dict) else (None, None, None)
    if not isinstance(survey_id, str) or not isinstance(case_id, int) \
            or not isinstance(expires, int):
        raise TokenRejected("forged", "the token's payload is incomplete")
    if now_wall_ms > expires:
        raise TokenRejected("expired", f"the link expired at {expires}")
    return SurveyClaim(survey_id, case_id, expires)


def check_answer(score: object, comment: object) -> tuple[int, str]:
    """A valid (score, comment) or ValueError saying what is wrong."""
    if isinstance(score, str):
        score = score.strip()
        if not score.isdigit():
            raise ValueError(f"the rating must be a whole number from {MIN_SCORE} to "
                             f"{MAX_SCORE}")
        score = int(score)
    if not isinstance(score, int) or isinstance(score, bool) \
            or not MIN_SCORE <= score <= MAX_SCORE:
        raise ValueError(f"the rating must be a whole number from {MIN_SCORE} to {MAX_SCORE}")
    text = "" if comment is None else comment
    if not isinstance(text, str):
        raise ValueError("the comment must be text")
    text = text.strip()
    if len(text) > MAX_COMMENT:
        raise ValueError(f"the comment is longer than {MAX_COMMENT} characters")
    if "\x00" in text:
        raise ValueError("the comment contains a NUL character")
    return score, text


def needs_follow_up(score: int) -> bool:
    return score <= LOW_SCORE

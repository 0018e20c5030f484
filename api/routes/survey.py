"""The owner's voice: the public survey page a resolved case's link leads to (no API key:
the signed one-time token is the only credential), the follow-up tasks low scores open,
and the quality of contact in GET /quality/contact.

The page is plain server-rendered HTML with no script and no external asset, so it works in
any mail client's browser and leaks nothing to third parties. Expired, used and forged links
get a page that says so; answers are rate-limited per client address.
"""

from __future__ import annotations

import html
import math
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from api.auth import Admin, RateLimiter, Viewer
from api.deps import StoreDep
from api.remote_schemas import ContactQuality, TaskClose, TaskList, TaskPublic
from api.schemas import Problem
from care import survey as rules
from storage import surveys as survey_store

router = APIRouter()

# Owners answer once; a client address trying many tokens is guessing or replaying.
ANSWERS_PER_S = 0.2
ANSWER_BURST = 5
Token = Annotated[str, Path(max_length=rules.MAX_TOKEN_LEN)]

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;"
          "padding:0 1rem;color:#222}fieldset{border:0;padding:0}label{margin-right:1rem}"
          "textarea{width:100%;min-height:6rem}button{margin-top:1rem;padding:.5rem 1.5rem}"
          ".error{color:#a00}")
_MESSAGES = {
    "expired": (410, "This link has expired",
                "The survey for this contact is closed. Thank you all the same."),
    "used": (409, "You have already answered",
             "This survey was answered already; each link can be used once. Thank you!"),
    "forged": (404, "This link is not valid",
               "The link is incomplete or was changed. Please use the link exactly as you "
               "received it."),
    "unknown": (404, "This link is not valid",
                "We could not find this survey. Please use the link exactly as you received "
                "it."),
}


def _page(status: int, title: str, body: str) -> HTMLResponse:
    document = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
                f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(document, status_code=status, headers={
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "form-action 'self'"})


def _unavailable(reason: str) -> HTMLResponse:
    status, title, text = _MESSAGES[reason]
    return _page(status, title, f"<p>{html.escape(text)}</p>")


def _form(token: str, error: str | None = None, comment: str = "") -> str:
    choices = "".join(
        f"<label><input type=\"radio\" name=\"score\" value=\"{n}\" required> {n}</label>"
        for n in range(rules.MIN_SCORE, rules.MAX_SCORE + 1))
    problem = f"<p class=\"error\">{html.escape(error)}</p>" if error else ""
    return (f"<p>How satisfied are you with how we handled your vehicle's issue? "
            f"1 = very dissatisfied, 5 = very satisfied.</p>{problem}"
            f"<form method=\"post\" action=\"/survey/{html.escape(token, quote=True)}\">"
            f"<fieldset>{choices}</fieldset>"
            f"<p><label for=\"comment\">Anything you want to tell us (optional)</label></p>"
            f"<textarea id=\"comment\" name=\"comment\" maxlength=\"{rules.MAX_COMMENT}\">"
            f"{html.escape(comment)}</textarea>"
            f"<button type=\"submit\">Send</button></form>")


def _limiter(request: Request) -> RateLimiter:
    state = request.app.state
    if not hasattr(state, "survey_limiter"):
        state.survey_limiter = RateLimiter(ANSWERS_PER_S, ANSWER_BURST)
    return state.survey_limiter  # type: ignore[no-any-return]


@router.get("/survey/{token}", include_in_schema=False)
async def survey_page(token: Token, store: StoreDep) -> HTMLResponse:
    try:
        await run_in_threadpool(survey_store.open_survey, store, token)
    except survey_store.SurveyUnavailable as exc:
        return _unavailable(exc.reason)
    return _page(200, "How did we do?", _form(token))


@router.post("/survey/{token}", include_in_schema=False)
async def survey_answer(token: Token, request: Request, store: StoreDep) -> HTMLResponse:
    address = request.client.host if request.client else "unknown"
    wait = _limiter(request).take(address)
    if wait > 0:
        return _page(429, "Please wait a moment",
                     f"<p>Too many answers from your network; try again in "
                     f"{max(1, math.ceil(wait))} s.</p>")
    raw = await request.body()
    try:
        fields = parse_qs(raw.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    score = fields.get("score", [""])[0]
    comment = fields.get("comment", [""])[0]
    try:
        await run_in_threadpool(survey_store.answer, store, token, score, comment)
    except survey_store.SurveyUnavailable as exc:
        return _unavailable(exc.reason)
    except ValueError as exc:
        return _page(422, "How did we do?", _form(token, str(exc), comment))
    return _page(200, "Thank you", "<p>Thank you for your answer. It goes straight to the "
                 "team that looked after your vehicle.</p>")


@router.get("/cases/{case_id}/survey", tags=["cases"], responses={404: {"model": Problem}})
def case_survey(case_id: Annotated[int, Path(ge=1, le=2_147_483_647)], store: StoreDep,
                _who: Viewer) -> dict[str, Any]:
    """The owner's survey of a resolved case: when it was sent, until when it is open, and
    the answer (score 1-5 and comment) once given."""
    row = survey_store.survey_of_case(store, case_id)
    if row is None:
        raise HTTPException(404, f"case {case_id} has no survey (it is sent when the case is "
                                 "resolved)")
    return row


@router.get("/tasks", response_model=TaskList, tags=["cases"])
def list_tasks(store: StoreDep, _who: Viewer,
               state: Literal["open", "done"] | None = None) -> TaskList:
    """Follow-up tasks for supervisors, newest first: a survey scored 2 or lower opens one."""
    return TaskList(items=[TaskPublic(**r) for r in survey_store.list_tasks(store, state)])


@router.post("/tasks/{task_id}/close", response_model=TaskPublic, tags=["cases"],
             responses={404: {"model": Problem}})
def close_task(task_id: Annotated[int, Path(ge=1, le=2_147_483_647)], body: TaskClose,
               store: StoreDep, who: Admin) -> TaskPublic:
    """A supervisor (admin key) closes a follow-up task, with a note of what was done."""
    try:
        return TaskPublic(**survey_store.close_task(store, task_id, actor=who.name,
                                                    note=body.note))
    except survey_store.TaskNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/quality/contact", response_model=ContactQuality, tags=["quality"])
def contact_quality(store: StoreDep, _who: Viewer) -> ContactQuality:
    """Quality of contact: owner satisfaction (answers, mean score, CSAT = share of 4 and 5)
    by alert type, detector, severity, agent and month; median time to first contact and to
    resolution and the share of cases closed within their SLA, by first-contact channel; and
    each detector's precision from staff labels alone and with the labels remote commands'
    results added."""
    return ContactQuality(**survey_store.contact_quality(store))
